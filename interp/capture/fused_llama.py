"""A fused forward pass of HuggingFace's `LlamaModel`, for capture of block-level sites.

HF's Llama layer spends about a third of a CPU forward pass outside its matrix products, in
small element-wise kernels: RMSNorm as five of them, rotary embeddings as `cat`, `neg`, two
`mul` and an `add` for each of q and k, separate q, k and v products, and residual adds. This
forward pass computes the same function with fewer, larger kernels:

- q, k and v from one product with the three weights stacked, and gate and up likewise;
- RMSNorm as `torch.nn.functional.rms_norm` (one fused kernel);
- the residual adds folded into the output products (`addmm`);
- rotary embeddings as one complex multiplication for q and k together. HF rotates the pairs
  (i, i + d/2) of each head; the rows of `q_proj` and `k_proj` are permuted so that those pairs
  are adjacent, which a complex view multiplies by cos + i sin. The same permutation of q and k
  leaves every q.k product, and so the attention pattern and output, unchanged.

The stacked and permuted weights are rebuilt at every call from the model's own tensors (a few
MB of copies, about 1% of the pass), so in-place edits of the weights are always seen.

Attention is `scaled_dot_product_attention` with a causal mask over default positions, as HF's
`sdpa` path computes it for a batch of token ids without padding. Activations agree with HF's
to round-off (see tests/test_capture_fast.py); `interp.capture.fast` uses this path only for
the exact `LlamaModel` class with the plain layout it was checked on, and HF's own modules for
anything else.
"""

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor, nn

SITES = ("resid_pre", "attn_out", "mlp_out", "resid_post")


def supports(base: nn.Module) -> bool:
    """Whether `base` is a plain `LlamaModel` this forward pass reproduces."""
    try:
        from transformers.models.llama.modeling_llama import LlamaModel
    except ImportError:  # pragma: no cover - transformers without Llama
        return False
    if type(base) is not LlamaModel:
        return False
    cfg = base.config
    rotary = getattr(base, "rotary_emb", None)  # on the model since transformers 4.45
    attn = base.layers[0].self_attn if len(base.layers) else None
    plain = (
        not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "hidden_act", None) == "silu"
        and getattr(cfg, "pretraining_tp", 1) == 1
        and rotary is not None
        and getattr(rotary, "rope_type", "default") not in ("dynamic", "longrope")
        and isinstance(getattr(attn, "scaling", None), float)
    )
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return plain and head_dim % 2 == 0


def _pair_order(n_heads: int, head_dim: int, device: torch.device) -> Tensor:
    """Row order that puts HF's rotary pairs (i, i + head_dim/2) of each head side by side."""
    half = torch.arange(head_dim // 2, device=device)
    within = torch.stack([half, half + head_dim // 2], dim=-1).reshape(-1)
    return (torch.arange(n_heads, device=device)[:, None] * head_dim + within).reshape(-1)


def _rotation(base: nn.Module, n_pos: int, device: torch.device) -> Tensor:
    """`cos + i sin` per position and frequency, `[n_pos, head_dim/2]`, from HF's own rotary
    module (so its rope type, scaling and `attention_scaling` are used as HF uses them)."""
    positions = torch.arange(n_pos, device=device)[None]
    probe = torch.empty(0, device=device, dtype=torch.float32)
    cos, sin = base.rotary_emb(probe, position_ids=positions)
    half = cos.shape[-1] // 2
    return torch.complex(cos[0, :, :half].float(), sin[0, :, :half].float())


@torch.no_grad()
def forward(
    base: nn.Module,
    tokens: Int[Tensor, "batch pos"],
    wanted: dict[int, dict[str, str]],
    found: dict[str, Tensor],
) -> None:
    """Run `base` on `tokens` through the last layer in `wanted`, filling `found`.

    `wanted` maps a layer to `{site: hook name}`, sites from `SITES`; each activation is stored
    as `[batch, pos, d_model]` under its hook name. Layers after the last wanted one are not run.
    """
    cfg = base.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    batch, n_pos = tokens.shape
    x = base.embed_tokens(tokens)
    d_model = x.shape[-1]
    x = x.reshape(batch * n_pos, d_model)
    dtype, device = x.dtype, x.device
    rotation = _rotation(base, n_pos, device)[None, :, None]  # [1, pos, 1, head_dim/2]
    q_order = _pair_order(n_heads, head_dim, device)
    k_order = _pair_order(n_kv, head_dim, device)
    n_q, n_k = n_heads * head_dim, n_kv * head_dim

    def keep(layer: int, site: str, value: Tensor) -> None:
        name = wanted.get(layer, {}).get(site)
        if name is not None:
            found[name] = value.reshape(batch, n_pos, d_model)  # x is never written in place

    def add_output(x: Tensor, inputs: Tensor, weight: Tensor, layer: int, site: str) -> Tensor:
        """x + inputs @ weight^T: one addmm, or two steps when the product itself is wanted."""
        if site not in wanted.get(layer, {}):
            return torch.addmm(x, inputs, weight.t())
        out = F.linear(inputs, weight)
        keep(layer, site, out)
        return x + out

    for layer in range(max(wanted) + 1):
        block: Any = base.layers[layer]
        attn, mlp = block.self_attn, block.mlp
        keep(layer, "resid_pre", x)
        w_qkv = torch.cat(
            [attn.q_proj.weight[q_order], attn.k_proj.weight[k_order], attn.v_proj.weight]
        )
        norm = block.input_layernorm
        h = F.rms_norm(x, (d_model,), norm.weight, norm.variance_epsilon)
        qkv = F.linear(h, w_qkv)
        qk = qkv[:, : n_q + n_k].float().reshape(batch, n_pos, n_heads + n_kv, head_dim // 2, 2)
        qk = torch.view_as_real(torch.view_as_complex(qk) * rotation).to(dtype)
        qk = qk.reshape(batch, n_pos, n_heads + n_kv, head_dim).transpose(1, 2)
        k = qk[:, n_heads:]
        v = qkv[:, n_q + n_k :].reshape(batch, n_pos, n_kv, head_dim).transpose(1, 2)
        if n_kv != n_heads:  # grouped-query attention, as HF's repeat_kv (no torch 2.5 flag)
            k = k.repeat_interleave(n_heads // n_kv, dim=1)
            v = v.repeat_interleave(n_heads // n_kv, dim=1)
        out = F.scaled_dot_product_attention(
            qk[:, :n_heads], k, v, is_causal=True, scale=attn.scaling
        )
        out = out.transpose(1, 2).reshape(batch * n_pos, n_q)
        x = add_output(x, out, attn.o_proj.weight, layer, "attn_out")
        norm = block.post_attention_layernorm
        h = F.rms_norm(x, (d_model,), norm.weight, norm.variance_epsilon)
        gate, up = F.linear(h, torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])).chunk(2, -1)
        hidden = F.silu(gate).mul_(up)
        x = add_output(x, hidden, mlp.down_proj.weight, layer, "mlp_out")
        keep(layer, "resid_post", x)
