"""A fused forward pass of HuggingFace's `LlamaModel` over a trie's nodes (the embedded model's
class), for `interp.explain.scoring`.

HF's Llama layer spends about a third of a CPU pass outside its matrix products, in small
element-wise kernels (see `interp.capture.fused_llama`, whose kernels this pass reuses): q, k
and v from one product of stacked weights, gate and up likewise; RMSNorm as one
`torch.nn.functional.rms_norm`; residual adds inside the output products (`addmm`); rotary
embeddings as one complex multiplication, with the rows of `q_proj` and `k_proj` permuted so
that HF's rotary pairs (i, i + d/2) are adjacent (which leaves every q.k product unchanged).
Positions are the nodes' depths, and attention is `scoring.attend` over the trie. The last
layer needs its keys and values at every node but everything else only where the scores are
read (the nodes where a sequence ends, ~1 in 5 for LIME's masks): there the queries, attention
output and MLP run on those nodes alone, each attending to its own path.

The stacked and permuted weights are rebuilt at every call from the model's own tensors (a few
MB of copies), so in-place edits of the weights are always seen. Only the exact `LlamaModel`
class with the plain layout `fused_llama.supports` checks takes this path; HF's own modules
run everything else.
"""

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.capture.fused_llama import _pair_order, _rotation, supports

__all__ = ["forward", "supports"]


@torch.inference_mode()
def forward(base: nn.Module, trie: Any, keep: Int[Tensor, " k"]) -> Float[Tensor, "k d_model"]:
    """The final-normed hidden state at the nodes `keep` of `trie` (a `scoring.Trie`), each a
    node where one of its sequences ends."""
    from interp.explain.scoring import attend

    cfg = base.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    device = base.embed_tokens.weight.device
    x = base.embed_tokens(trie.tokens.to(device))
    n_nodes, d_model = x.shape
    dtype = x.dtype
    depth = trie.depth.to(device)
    rotation = _rotation(base, int(depth.max()) + 1, device)[depth][:, None]  # [nodes, 1, d/2]
    q_order = _pair_order(n_heads, head_dim, device)
    k_order = _pair_order(n_kv, head_dim, device)
    n_q, n_k = n_heads * head_dim, n_kv * head_dim
    keep = keep.to(device)
    last = len(base.layers) - 1

    def rotate(t: Tensor, rot: Tensor, heads: int) -> Tensor:  # rows in `_pair_order`
        pairs = torch.view_as_complex(t.float().reshape(len(t), heads, head_dim // 2, 2))
        return torch.view_as_real(pairs * rot).to(dtype).reshape(len(t), heads, head_dim)

    for i, block in enumerate(base.layers):
        attn, mlp = block.self_attn, block.mlp
        w_qkv = torch.cat(
            [attn.q_proj.weight[q_order], attn.k_proj.weight[k_order], attn.v_proj.weight]
        )
        norm = block.input_layernorm
        h = F.rms_norm(x, (d_model,), norm.weight, norm.variance_epsilon)
        if i < last:
            qkv = F.linear(h, w_qkv)
            q = rotate(qkv[:, :n_q], rotation, n_heads)
        else:  # keys and values everywhere, queries only where the scores are read
            qkv = torch.cat([h.new_empty(n_nodes, n_q), F.linear(h, w_qkv[n_q:])], dim=1)
            q = rotate(F.linear(h[keep], w_qkv[:n_q]), rotation[keep], n_heads)
        k = rotate(qkv[:, n_q : n_q + n_k], rotation, n_kv)
        v = qkv[:, n_q + n_k :].reshape(n_nodes, n_kv, head_dim)
        if i < last:
            out = attend(q, k, v, trie, attn.scaling)
        else:
            x = x[keep]
            out = _attend_paths(q, k, v, trie, keep, attn.scaling)
        x = torch.addmm(x, out.reshape(len(x), n_q), attn.o_proj.weight.t())
        norm = block.post_attention_layernorm
        h = F.rms_norm(x, (d_model,), norm.weight, norm.variance_epsilon)
        gate, up = F.linear(h, torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])).chunk(2, -1)
        x = torch.addmm(x, F.silu(gate).mul_(up), mlp.down_proj.weight.t())
    return F.rms_norm(x, (d_model,), base.norm.weight, base.norm.variance_epsilon)


def _attend_paths(
    q: Float[Tensor, "k heads d_head"],
    k: Float[Tensor, "nodes kv_heads d_head"],
    v: Float[Tensor, "nodes kv_heads d_head"],
    trie: Any,
    keep: Int[Tensor, " k"],
    scaling: float,
) -> Float[Tensor, "k heads d_head"]:
    """Attention of the end nodes `keep` (sorted) to their own paths (`trie.paths`)."""
    row = torch.empty(len(keep), dtype=torch.long)
    row[torch.searchsorted(keep.cpu(), trie.ends)] = torch.arange(len(trie.ends))
    paths = trie.paths[row].to(k.device)  # [k, width], -1 past the end
    n, width = paths.shape
    heads, kv_heads, d_head = q.shape[1], k.shape[1], q.shape[2]
    flat = paths.clamp(min=0).reshape(-1)
    kp = k.index_select(0, flat).view(n, width, kv_heads, d_head).transpose(1, 2)
    vp = v.index_select(0, flat).view(n, width, kv_heads, d_head).transpose(1, 2)
    out = F.scaled_dot_product_attention(
        q[:, :, None],
        kp,
        vp,
        attn_mask=(paths >= 0)[:, None, None],
        scale=scaling,
        enable_gqa=heads != kv_heads,
    )
    return out[:, :, 0]
