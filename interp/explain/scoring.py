"""Scoring many masked token rows at once: one plain HF forward pass over their prefix tree.

The masked rows of one text share beginnings: every row starts with the fixed prefix (BOS), and
rows that keep (or mask) their first k tokens alike share those k tokens. In a causal model the
hidden states at position i depend only on tokens 0..i, so a shared beginning's states are the
same in every row that has it and need computing once.

- `build_trie` turns distinct token sequences into their prefix tree (trie): one node per
  distinct beginning, nodes in pre-order (depth-first), each node at position = its depth.
- `tree_attention` is attention over that tree: a node attends to its ancestors and itself,
  exactly the keys its own sequence shows it in an unbatched run. Nodes go in blocks of
  `BLOCK` consecutive nodes; in pre-order, every ancestor of a block's nodes that lies before
  the block is an ancestor of the block's first node, so a block attends to its own nodes plus
  that one path, with a mask saying which of them each node sees. Keys are read once per
  block, not once per node (for LIME's masks that is ~15x less memory traffic).
- `TreeScorer` runs a trie's nodes as one flat sequence through the bridge's HuggingFace
  modules rebuilt without hook points (`interp.capture.fast.runner_for`: the bridge's own
  tensors, shared), with `tree_attention` as the attention implementation, and the LM head only
  at the nodes where a sequence ends. A plain `LlamaModel` (the embedded model's class) runs
  through `interp.explain.fused_tree` instead: the same layers in fewer, larger kernels.

For LIME's 5,000 masks of a 16-token text the tree holds ~4.6x fewer positions than the rows,
for SHAP's Partition masks ~2.5x, and nothing is padded.

`tree_scorer(model)` returns None, and the explainers run the bridge itself
(`masking.last_logits`), whenever this path could differ from the bridge's: a model that is not
a bridge over an HF model, processed weights, a hook on any of the bridge's hook points (an
intervention active), an attention variant `tree_attention` does not reproduce (attention sinks,
position biases), or logits unlike the bridge's on a probe input (checked once per bridge and
set of weights).
"""

import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from interp.explain import fused_tree

TREE = "interp_tree"
"""The attention implementation name `tree_attention` is registered under in transformers."""
BLOCK = 32
"""Nodes per attention block (measured on the default model: 32 and 64 alike, 16 and 128 slower)."""


@dataclass(frozen=True)
class Trie:
    """The prefix tree of token sequences, nodes in pre-order, padded to whole blocks.

    `tokens[i]`, `depth[i]`: node i's token and position. `ends[r]`: the node at which input
    sequence r ends, `paths[r]` its nodes root first (-1 past its length). Block b holds nodes b*B ... b*B + B - 1; `outside[b]` lists the ancestors
    of its first node, root first (-1 past its depth), and `sees[b, j]` says which keys node
    b*B + j attends to: the `outside[b]` ones, then the block's own B nodes. Padding nodes
    (token `pad`, after the last real node) see only themselves.
    """

    tokens: Int[Tensor, " nodes"]
    depth: Int[Tensor, " nodes"]
    ends: Int[Tensor, " rows"]
    paths: Int[Tensor, "rows width"]
    outside: Int[Tensor, "blocks width"]
    sees: Bool[Tensor, "blocks block keys"]
    n_real: int

    def __len__(self) -> int:
        return len(self.tokens)


def distinct_sorted(
    seqs: Int[Tensor, "rows width"], lengths: Int[Tensor, " rows"]
) -> tuple[Int[Tensor, "n width"], Int[Tensor, " n"], Int[Tensor, " rows"]]:
    """(distinct sequences in lexicographic order, -1 past each one's length; their lengths;
    the index of each input row among them)."""
    width = seqs.shape[1]
    inside = torch.arange(width)[None] < lengths[:, None]
    keyed = torch.where(inside, seqs.long(), torch.tensor(-1))
    unique, inverse = torch.unique(keyed, dim=0, return_inverse=True)
    return unique, (unique >= 0).sum(1), inverse


def shared_lengths(seqs: Int[Tensor, "n width"]) -> Int[Tensor, " n"]:
    """How many first tokens each sequence shares with the one before it (0 for the first);
    sequences as `distinct_sorted` gives them (-1 past their length)."""
    same = (seqs[1:] == seqs[:-1]) & (seqs[1:] >= 0)
    shared = same.long().cumprod(1).sum(1)
    return torch.cat([torch.zeros(1, dtype=torch.long), shared])


def node_groups(seqs: Int[Tensor, "n width"], max_nodes: int) -> list[slice]:
    """Consecutive runs of the sorted distinct sequences (as `distinct_sorted` gives them) whose
    tries hold at most `max_nodes` nodes each (a longer single sequence is a run of its own)."""
    lengths = (seqs >= 0).sum(1)
    new, full = (lengths - shared_lengths(seqs)).tolist(), lengths.tolist()
    runs, start, size = [], 0, 0
    for r in range(len(seqs)):
        if r > start and size + new[r] > max_nodes:
            runs.append(slice(start, r))
            start, size = r, full[r]
        else:
            size += full[r] if r == start else new[r]
    if len(seqs):
        runs.append(slice(start, len(seqs)))
    return runs


def build_trie(seqs: Int[Tensor, "n width"], pad: int, block: int = BLOCK) -> Trie:
    """The trie of distinct sequences in lexicographic order (as `distinct_sorted` gives them).

    Sorted sequences list the trie in pre-order when each emits the tokens it does not share
    with the one before it; node ids are that order. A sequence's path (its node at each
    depth) is its own new node where it has one, else the path of the latest sequence that
    created a node at that depth.
    """
    seqs = seqs.long().cpu()
    n, width = seqs.shape
    lengths = (seqs >= 0).sum(1)
    columns = torch.arange(width)
    valid = columns[None] < lengths[:, None]
    new = valid & (columns[None] >= shared_lengths(seqs)[:, None])
    ids = torch.cumsum(new.reshape(-1).long(), 0).view(n, width) - 1
    creator = torch.cummax(torch.where(new, torch.arange(n)[:, None], -1), 0).values
    path = torch.where(valid, ids.gather(0, creator.clamp(min=0)), -1)  # [n, width]
    n_real = int(new.sum())
    n_nodes = -(-n_real // block) * block
    row_of = torch.arange(n)[:, None].expand(n, width)[new]
    depth = columns.expand(n, width)[new]
    ancestors = torch.where(columns[None] <= depth[:, None], path[row_of], -1)  # [nodes, width]
    extra = n_nodes - n_real
    ancestors = torch.cat([ancestors, torch.full((extra, width), -1, dtype=torch.long)])
    ancestors[n_real:, 0] = torch.arange(n_real, n_nodes)  # a padding node is its own root
    depth = torch.cat([depth, torch.zeros(extra, dtype=torch.long)])
    tokens = torch.cat([seqs[new], torch.full((extra,), pad, dtype=torch.long)])
    outside, sees = _block_visibility(ancestors, depth, block)
    ends = path[torch.arange(n), lengths - 1]
    return Trie(tokens, depth, ends, path, outside, sees, n_real)


def _block_visibility(
    ancestors: Int[Tensor, "nodes width"], depth: Int[Tensor, " nodes"], block: int
) -> tuple[Int[Tensor, "blocks width"], Bool[Tensor, "blocks block keys"]]:
    """Each block's outside keys (its first node's proper ancestors) and which keys each node
    sees: an outside key at depth e iff it is the node's own ancestor at depth e; a block key
    k iff the node's ancestor at depth(k) is k."""
    n_nodes, width = ancestors.shape
    n_blocks = n_nodes // block
    a = ancestors.view(n_blocks, block, width)
    first = a[:, 0]  # [blocks, width]
    first_depth = depth.view(n_blocks, block)[:, 0]
    proper = torch.arange(width)[None] < first_depth[:, None]
    outside = torch.where(proper, first, -1)
    sees_out = (a == outside[:, None]) & (outside[:, None] >= 0)
    key_depth = depth.view(n_blocks, 1, block).expand(n_blocks, block, block)
    own = torch.arange(n_nodes).view(n_blocks, 1, block)
    sees_in = a.gather(2, key_depth) == own
    return outside, torch.cat([sees_out, sees_in], dim=2)


class Unsupported(Exception):
    """An attention variant `tree_attention` does not reproduce: the bridge path is used."""


def tree_attention(
    module: nn.Module,
    query: Float[Tensor, "1 heads nodes d_head"],
    key: Float[Tensor, "1 kv_heads nodes d_head"],
    value: Float[Tensor, "1 kv_heads nodes d_head"],
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Float[Tensor, "1 nodes heads d_head"], None]:
    """HF's attention interface over the trie in `kwargs["interp_trie"]` (`attend`)."""
    trie: Trie | None = kwargs.get("interp_trie")
    if trie is None or dropout or attention_mask is not None:
        raise Unsupported("tree attention runs only on a trie, in eval mode, without a mask")
    if kwargs.get("s_aux") is not None or kwargs.get("position_bias") is not None:
        raise Unsupported("attention sinks and position biases are not reproduced")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # node-major
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    out = attend(q, k, v, trie, scaling, kwargs.get("sliding_window"), kwargs.get("softcap"))
    return out[None], None


def attend(
    q: Float[Tensor, "nodes heads d_head"],
    k: Float[Tensor, "nodes kv_heads d_head"],
    v: Float[Tensor, "nodes kv_heads d_head"],
    trie: Trie,
    scaling: float,
    window: int | None = None,
    softcap: float | None = None,
) -> Float[Tensor, "nodes heads d_head"]:
    """Attention over `trie` (module docstring), as HF's eager attention computes it: scores
    scaled, optionally soft-capped, limited to a sliding window counted in positions, softmax
    in float32."""
    n_blocks, block, _ = trie.sees.shape
    heads, kv_heads, d_head = q.shape[1], k.shape[1], q.shape[2]
    sees = trie.sees.to(q.device)
    if window is not None:
        sees = sees & (_key_distance(trie).to(q.device) < window)
    outside = trie.outside.clamp(min=0).reshape(-1).to(q.device)

    def keys(t: Tensor) -> Tensor:  # [blocks, kv_heads, keys, d_head]: the path, then the block
        path = t.index_select(0, outside).view(n_blocks, -1, kv_heads, d_head)
        own = t.reshape(n_blocks, block, kv_heads, d_head)
        return torch.cat([path, own], dim=1).transpose(1, 2)

    qb = q.reshape(n_blocks, block, heads, d_head).transpose(1, 2)
    kb, vb = keys(k), keys(v)
    if softcap is None:
        out = F.scaled_dot_product_attention(
            qb, kb, vb, attn_mask=sees[:, None], scale=scaling, enable_gqa=heads != kv_heads
        )
    else:
        group = heads // kv_heads
        kb, vb = kb.repeat_interleave(group, dim=1), vb.repeat_interleave(group, dim=1)
        scores = torch.matmul(qb, kb.transpose(-1, -2)) * scaling
        scores = torch.tanh(scores / softcap) * softcap
        scores = scores.masked_fill(~sees[:, None], float("-inf"))
        out = torch.matmul(scores.softmax(-1, dtype=torch.float32).to(vb.dtype), vb)
    return out.transpose(1, 2).reshape(-1, heads, d_head)


def _key_distance(trie: Trie) -> Int[Tensor, "blocks block keys"]:
    """depth(node) - depth(key) for each node and key of `Trie.sees`."""
    n_blocks, block, _ = trie.sees.shape
    width = trie.outside.shape[1]
    node_depth = trie.depth.view(n_blocks, block, 1)
    key_depth = torch.cat(
        [torch.arange(width).expand(n_blocks, width), trie.depth.view(n_blocks, block)], dim=1
    )
    return node_depth - key_depth[:, None]


def _no_mask(*args: Any, **kwargs: Any) -> None:
    """The mask builder for `TREE`: the tree is the mask, and `tree_attention` reads it."""
    return None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(TREE, tree_attention)
    AttentionMaskInterface.register(TREE, _no_mask)


class TreeScorer:
    """Next-token logits after each sequence of a trie, from one forward pass over its nodes
    (see the module docstring). `runner` is `interp.capture.fast.runner_for(bridge)`."""

    def __init__(self, bridge: nn.Module, runner: Any) -> None:
        _register()
        self.base = runner.skeleton
        head = bridge.original_model.get_output_embeddings()
        self.head = getattr(head, "_original_component", head)
        self.softcap = getattr(bridge.original_model.config, "final_logit_softcapping", None)
        configs = (getattr(m, "config", None) for m in self.base.modules())
        self.configs = list({id(c): c for c in configs if c is not None}.values())
        self.pad = int(bridge.tokenizer.pad_token_id or 0) if bridge.tokenizer else 0
        self.fused = fused_tree.supports(self.base)
        """Whether `interp.explain.fused_tree.forward` runs the base model (a plain Llama)."""

    def logits(self, trie: Trie) -> Float[Tensor, "rows vocab"]:
        """[rows, vocab]: the logits at `trie.ends`."""
        keep, inverse = torch.unique(trie.ends, return_inverse=True)
        if self.fused:
            hidden = fused_tree.forward(self.base, trie, keep)
        else:
            hidden = self.hidden(trie)[keep.to(self.head.weight.device)]
        with torch.inference_mode():
            logits = self.head(hidden)
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits[inverse.to(logits.device)]

    def hidden(self, trie: Trie) -> Float[Tensor, "nodes d_model"]:
        """The final-normed hidden state at each node, through HF's own modules with
        `tree_attention` as the attention implementation."""
        device = next(self.base.parameters()).device
        saved = [c._attn_implementation for c in self.configs]
        try:
            for c in self.configs:  # read at each call by HF's attention and mask builders
                c._attn_implementation = TREE
            with torch.inference_mode():
                return self.base(
                    trie.tokens[None].to(device),
                    position_ids=trie.depth[None].to(device),
                    use_cache=False,
                    interp_trie=trie,
                ).last_hidden_state[0]
        finally:
            for c, impl in zip(self.configs, saved, strict=True):
                c._attn_implementation = impl

    def scores(
        self,
        tokens: Int[Tensor, "rows width"],
        lengths: Int[Tensor, " rows"],
        score: Any,
        max_nodes: int,
    ) -> tuple[Float[Tensor, " rows"], int]:
        """(score(logits after tokens[r, :lengths[r]]) for each row r, nodes computed): the
        distinct sequences in tries of at most `max_nodes` nodes, one forward pass each."""
        seqs, _, which = distinct_sorted(tokens.cpu(), lengths.cpu())
        out = torch.empty(len(seqs))
        nodes = 0
        for run in node_groups(seqs, max_nodes):
            trie = build_trie(seqs[run], self.pad)
            out[run] = score(self.logits(trie)).float().cpu()
            nodes += trie.n_real
        return out[which], nodes


_SCORERS: "weakref.WeakKeyDictionary[Any, TreeScorer | None]" = weakref.WeakKeyDictionary()
"""Per capture runner (one per bridge and set of weights): its tree scorer, or None when the
probe found that the tree path differs from the bridge (not retried)."""


def _probe_agrees(bridge: nn.Module, scorer: TreeScorer) -> bool:
    """Whether the tree path's logits match the bridge's on three random sequences sharing
    beginnings (within 1e-4 of the largest logit in float32, 2e-2 in lower precisions)."""
    gen = torch.Generator().manual_seed(0)
    seqs = torch.randint(0, int(bridge.cfg.d_vocab), (3, 7), generator=gen)
    seqs[1, :4] = seqs[0, :4]
    seqs[2, :2] = seqs[0, :2]
    lengths = torch.tensor([7, 6, 5])
    unique, _, inverse = distinct_sorted(seqs, lengths)
    try:
        got = scorer.logits(build_trie(unique, scorer.pad))[inverse]
    except (Unsupported, TypeError, ValueError, RuntimeError):
        # An architecture whose modules take no positions or keyword arguments this way, or
        # an attention variant the tree does not reproduce: the bridge scores it.
        return False
    with torch.inference_mode():
        want = [
            bridge(seqs[i : i + 1, :n].to(bridge.cfg.device))[0, -1]
            for i, n in enumerate(lengths.tolist())
        ]
    exact = next(scorer.base.parameters()).dtype == torch.float32
    got, want = got.float().cpu(), torch.stack(want).float().cpu()
    tol = 1e-4 if exact else 2e-2
    return bool((got - want).abs().max() <= tol * max(float(want.abs().max()), 1.0))


def tree_scorer(model: Any) -> TreeScorer | None:
    """The tree path for `model`, or None when the bridge must be run (module docstring)."""
    from interp.capture.fast import has_active_hooks, runner_for

    original = getattr(model, "original_model", None)
    if not isinstance(original, nn.Module) or not hasattr(model, "blocks"):
        return None
    if getattr(original, "hf_device_map", None) or getattr(model, "_weights_processed", False):
        return None
    if getattr(model, "compatibility_mode", False) or has_active_hooks(model):
        return None
    runner = runner_for(model)
    if runner is None:
        return None
    if runner not in _SCORERS:
        scorer = TreeScorer(model, runner)
        _SCORERS[runner] = scorer if _probe_agrees(model, scorer) else None
    return _SCORERS[runner]
