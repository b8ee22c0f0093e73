"""Edge attribution patching (EAP, Syed et al. 2023; EAP-IG with `steps`) and exact edge
patching, over the graph of the residual stream:

- senders write into the residual stream: `embed` (block 0's resid_pre), every head
  (`LxHy`: its z times its rows of W_O) and every MLP (`Mx`: hook_mlp_out);
- receivers read from it: every head (`LxHy`: its own copy of the attention input,
  `blocks.x.hook_attn_in` [batch, pos, head, d_model], which feeds its q, k and v), every MLP
  (`Mx`: the input of its norm, `blocks.x.ln2.hook_in`) and `logits` (`ln_final.hook_in`);
- an edge u -> v exists when u writes before v reads (a head feeds its own layer's MLP).

The score of an edge is the change in the metric when v's input alone sees u's clean output
instead of its corrupt one. Exact edge patching runs it: v's input gets
`scale * (a_u(clean) - a_u(corrupt))` added, everything else stays corrupt (folded into the
batch, a row block per edge). EAP estimates every edge at once from one backward pass:
`sum (a_u(clean) - a_u(corrupt)) . d metric / d input_v`. A circuit is the top-n edges by |score|.

The per-head attention input is a TransformerBridge switch (`set_use_attn_in`); it is turned on
for the call and restored afterwards, also on an error.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from interp.interventions import HookFn, intervene
from interp.patching.attribution import gradients
from interp.patching.exact import DEFAULT_MEMORY_MB, Progress, _mean, forward, run_and_store
from interp.patching.inputs import PatchingError, prompt_pair
from interp.patching.metric import Metric


@dataclass(frozen=True)
class Node:
    name: str
    layer: int  # the block it belongs to; -1 for embed, n_layers for logits
    kind: str  # "embed", "head", "mlp", "logits"
    head: int | None = None


@dataclass(frozen=True, eq=False)
class EdgeResult:
    """Scores [senders, receivers] (NaN where no edge exists) and the baselines."""

    scores: Tensor
    senders: list[Node]
    receivers: list[Node]
    method: str
    metric: str
    clean: float
    corrupt: float
    meta: dict[str, Any] = field(default_factory=dict)

    def edges(self) -> list[tuple[str, str, float]]:
        """Every existing edge (sender, receiver, score), largest |score| first."""
        out = [
            (s.name, r.name, float(self.scores[i, j]))
            for i, s in enumerate(self.senders)
            for j, r in enumerate(self.receivers)
            if not torch.isnan(self.scores[i, j])
        ]
        return sorted(out, key=lambda e: -abs(e[2]))

    def circuit(self, n: int = 20) -> list[tuple[str, str, float]]:
        """The top-n edges by |score|."""
        return self.edges()[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "metric": self.metric,
            "clean": self.clean,
            "corrupt": self.corrupt,
            "edges": [{"sender": s, "receiver": r, "score": v} for s, r, v in self.edges()],
            "meta": self.meta,
        }


def nodes(model: Any) -> tuple[list[Node], list[Node]]:
    """(senders, receivers) in computation order."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    senders, receivers = [Node("embed", -1, "embed")], []
    for lay in range(n_layers):
        heads = [Node(f"L{lay}H{h}", lay, "head", h) for h in range(n_heads)]
        mlp = Node(f"M{lay}", lay, "mlp")
        senders += [*heads, mlp]
        receivers += [*heads, mlp]
    receivers.append(Node("logits", n_layers, "logits"))
    return senders, receivers


def feeds(u: Node, v: Node) -> bool:
    """Whether u's output reaches v's input through the residual stream."""
    if u.kind == "head" and v.kind == "mlp":
        return u.layer <= v.layer
    return u.layer < v.layer


def receiver_hook(v: Node) -> str:
    if v.kind == "head":
        return f"blocks.{v.layer}.hook_attn_in"
    if v.kind == "mlp":
        return f"blocks.{v.layer}.ln2.hook_in"
    return "ln_final.hook_in"


def _sender_hooks(model: Any) -> list[str]:
    n = int(model.cfg.n_layers)
    return ["blocks.0.hook_resid_pre"] + [
        h for lay in range(n) for h in (f"blocks.{lay}.attn.hook_z", f"blocks.{lay}.hook_mlp_out")
    ]


def sender_outputs(model: Any, acts: dict[str, Tensor]) -> Tensor:
    """[senders, batch, pos, d_model]: what each sender adds to the residual stream."""
    out = [acts["blocks.0.hook_resid_pre"]]
    for lay in range(int(model.cfg.n_layers)):
        w_o = model.blocks[lay].attn.W_O  # [head, d_head, d_model]
        z = acts[f"blocks.{lay}.attn.hook_z"]
        out += list(torch.einsum("bphe,hed->hbpd", z, w_o.to(z.dtype)))
        out.append(acts[f"blocks.{lay}.hook_mlp_out"])
    return torch.stack(out)


@contextmanager
def attn_in(model: Any) -> Iterator[None]:
    """Per-head attention inputs on (`hook_attn_in`), the previous setting restored after."""
    before = bool(getattr(model.cfg, "use_attn_in", False))
    if not hasattr(model, "set_use_attn_in"):
        raise PatchingError("edge patching needs a TransformerBridge (per-head attention inputs)")
    try:
        model.set_use_attn_in(True)
        yield
    finally:
        model.set_use_attn_in(before)


def _deltas(model: Any, clean: Tensor, corrupt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(a_u(clean) - a_u(corrupt) for every sender u, clean logits, corrupt logits), from one
    forward pass over both prompts."""
    n = clean.shape[0]
    logits, acts = run_and_store(model, torch.cat([clean, corrupt]), _sender_hooks(model))
    with torch.no_grad():
        out = sender_outputs(model, acts)
    return out[:, :n] - out[:, n:], logits[:n], logits[n:]


def _mask(senders: list[Node], receivers: list[Node]) -> Tensor:
    return torch.tensor([[feeds(u, v) for v in receivers] for u in senders])


def edge_attribution(
    model: Any,
    clean: str | Sequence[str] | Tensor,
    corrupt: str | Sequence[str] | Tensor,
    metric: Metric,
    *,
    steps: int = 0,
) -> EdgeResult:
    """EAP scores of every edge (EAP-IG with `steps` > 0): scores[u, v] estimates the metric's
    change when v reads u's clean output."""
    a, b = prompt_pair(model, clean, corrupt)
    senders, receivers = nodes(model)
    with attn_in(model):
        delta, clean_logits, corrupt_logits = _deltas(model, a, b)
        hooks = list(dict.fromkeys(receiver_hook(v) for v in receivers))
        grads = gradients(model, a, b, hooks, metric, steps).grads
    g = torch.stack(
        [
            grads[receiver_hook(v)][:, :, v.head] if v.kind == "head" else grads[receiver_hook(v)]
            for v in receivers
        ]
    )
    scores = torch.einsum("sbpd,rbpd->sr", delta.float(), g.float()).cpu()
    scores = scores.masked_fill(~_mask(senders, receivers), float("nan"))
    c, r = _mean(metric, clean_logits), _mean(metric, corrupt_logits)
    method = "eap-ig" if steps else "eap"
    return EdgeResult(scores, senders, receivers, method, metric.name, c, r, {"steps": steps})


def _adder(deltas: Tensor, local: Tensor, heads: Tensor | None, n_pairs: int) -> HookFn:
    """Hook: the rows of local edge local[j] get deltas[j] ([pairs, pos, d_model]) added, at
    head heads[j] of a per-head input."""
    rows = (local[:, None] * n_pairs + torch.arange(n_pairs)[None]).flatten()
    flat = deltas.reshape(-1, *deltas.shape[2:])
    head = None if heads is None else heads.repeat_interleave(n_pairs)

    def hook(act: Tensor, *, hook: Any) -> Tensor:
        out = act.clone()
        d = flat.to(act.device, act.dtype)
        if head is None:
            out[rows] = out[rows] + d
        else:
            out[rows, :, head] = out[rows, :, head] + d
        return out

    return hook


@torch.no_grad()
def exact_edges(
    model: Any,
    clean: str | Sequence[str] | Tensor,
    corrupt: str | Sequence[str] | Tensor,
    metric: Metric,
    *,
    scale: float = 1.0,
    memory_mb: float = DEFAULT_MEMORY_MB,
    on_progress: Progress | None = None,
) -> EdgeResult:
    """Exact edge patching: scores[u, v] = metric(corrupt run with v's input shifted by
    scale * (a_u(clean) - a_u(corrupt))) - metric(corrupt run). One row block per edge, folded
    into batches; `scale` < 1 patches part of the difference (a first-order check of EAP)."""
    from interp.patching.exact import rows_per_chunk

    a, b = prompt_pair(model, clean, corrupt)
    senders, receivers = nodes(model)
    mask = _mask(senders, receivers)
    edges = mask.nonzero().tolist()
    n_pairs = b.shape[0]
    scores = torch.full(mask.shape, float("nan"))
    with attn_in(model):
        delta, clean_logits, corrupt_logits = _deltas(model, a, b)
        r = _mean(metric, corrupt_logits)
        k = rows_per_chunk(model, b.shape[1], n_pairs, memory_mb)
        for start in range(0, len(edges), k):
            chunk = edges[start : start + k]
            values = _edge_chunk(model, b, delta * scale, receivers, chunk, metric)
            for (i, j), v in zip(chunk, values.tolist(), strict=True):
                scores[i, j] = v - r
            if on_progress is not None:
                on_progress(start + len(chunk), len(edges))
    c = _mean(metric, clean_logits)
    return EdgeResult(scores, senders, receivers, "exact", metric.name, c, r, {"scale": scale})


def _edge_chunk(model, tokens, delta, receivers, chunk, metric) -> Tensor:
    n_pairs = tokens.shape[0]
    groups: dict[str, list[tuple[int, int, int]]] = {}
    for local, (i, j) in enumerate(chunk):
        groups.setdefault(receiver_hook(receivers[j]), []).append((local, i, j))
    hooks = []
    for name, items in groups.items():
        local = torch.tensor([loc for loc, _, _ in items])
        d = delta[torch.tensor([i for _, i, _ in items])]
        heads = None
        if receivers[items[0][2]].kind == "head":
            heads = torch.tensor([receivers[j].head for _, _, j in items])
        hooks.append((name, _adder(d, local, heads, n_pairs)))
    batch = tokens.repeat(len(chunk), 1)
    pairs = torch.arange(n_pairs).repeat(len(chunk))
    with intervene(model, hooks):
        values = metric(forward(model, batch), pairs)
    return values.float().view(len(chunk), n_pairs).mean(1).cpu()
