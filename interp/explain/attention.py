"""Attention analysis: per-head entropy, pattern scores and a head classification.

Patterns are read through `interp.interventions.store` at each block's `attn.hook_pattern`
([batch, head, query, key]); nothing is edited, and no cache is modified.

- entropy: for each query q, H_q = -sum_{k<=q} p_qk log p_qk over its q+1 visible keys,
  normalised by log(q+1), so 0 is attention to one key and 1 is uniform over the visible keys;
  averaged over queries q >= 1 (query 0 sees one key) and rows.
- On BOS + a random sequence of `length` tokens + the same sequence again (`repeated_tokens`):
  previous-token score: mean p[q, q-1] over queries q >= 2;
  induction score: mean p[q, q-length+1] (the token after the current token's first occurrence)
  over the second copy's queries;
  duplicate-token score: mean p[q, q-length] (the current token's first occurrence) over the
  second copy;
  sink score: mean p[q, 0] (attention to the first token, BOS) over queries q >= 1.
- `classify`: a head is in a class when its score is at least that class's threshold.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.explain.errors import ExplainError
from interp.interventions import intervene, store

SCORES = ("previous_token", "induction", "duplicate_token", "sink")
THRESHOLDS: dict[str, float] = {
    "previous_token": 0.5,
    "induction": 0.5,
    "duplicate_token": 0.5,
    "sink": 0.5,
}
"""Default class thresholds: a head whose score is at least this puts most of its attention
(more than half, on average) where the class says."""


def pattern_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


@torch.inference_mode()
def attention_patterns(
    model: Any, tokens: Int[Tensor, "batch pos"], layers: list[int] | None = None
) -> Float[Tensor, "layer batch head query key"]:
    """Every (or the given) layer's attention patterns on `tokens`, float32 on the CPU."""
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    held: dict[str, Tensor] = {}
    hooks = {pattern_hook(layer): store(held, str(layer)) for layer in layers}
    with intervene(model, hooks):
        model(tokens.to(model.cfg.device), logits_to_keep=1)
    return torch.stack([held[str(layer)].float().cpu() for layer in layers])


def entropy(
    patterns: Float[Tensor, "... query key"],
) -> Float[Tensor, "..."]:
    """Mean over queries q >= 1 of H_q / log(q + 1) (module docstring); `...` are the leading
    axes kept, e.g. [layer, batch, head] -> [layer, batch, head]."""
    q = patterns.shape[-2]
    if q < 2:
        raise ExplainError("entropy needs at least 2 positions (query 0 sees one key only)")
    p = patterns.float()
    h = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)  # [..., query]; 0 log 0 = 0
    visible = torch.arange(1, q + 1, dtype=torch.float32)
    return (h[..., 1:] / visible[1:].log()).mean(-1)


def repeated_tokens(
    vocab: int,
    length: int = 32,
    batch: int = 8,
    seed: int = 0,
    bos: int | None = 0,
    first_id: int = 3,
) -> Int[Tensor, "batch total"]:
    """[batch, (1) + 2 length]: (BOS,) then `length` uniform ids in [first_id, vocab), twice."""
    gen = torch.Generator().manual_seed(seed)
    seq = torch.randint(first_id, vocab, (batch, length), generator=gen)
    parts = [seq, seq] if bos is None else [torch.full((batch, 1), bos), seq, seq]
    return torch.cat(parts, dim=1)


def _diagonal_mean(p: Tensor, offset: int, first_query: int) -> Tensor:
    """mean over rows and queries q >= first_query of p[..., q, q + offset]."""
    d = torch.diagonal(p, offset=offset, dim1=-2, dim2=-1)  # queries -offset ..
    return d[..., first_query + offset :].mean((1, -1))


def pattern_scores(
    patterns: Float[Tensor, "layer batch head query key"], length: int, n_prefix: int = 1
) -> dict[str, Float[Tensor, "layer head"]]:
    """The four scores of the module docstring on patterns of `repeated_tokens(length=...)`."""
    second = n_prefix + length  # first query of the second copy
    return {
        "previous_token": _diagonal_mean(patterns, -1, n_prefix + 1),
        "induction": _diagonal_mean(patterns, -(length - 1), second),
        "duplicate_token": _diagonal_mean(patterns, -length, second),
        "sink": patterns[..., 1:, 0].mean((1, -1)),
    }


@dataclass(frozen=True)
class HeadReport:
    """Scores and entropy per head [layer, head], and the classes: {class: [(layer, head)]}."""

    scores: dict[str, Tensor]
    entropy: Tensor
    classes: dict[str, list[tuple[int, int]]]
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))

    def labels(self) -> dict[tuple[int, int], list[str]]:
        """{(layer, head): [classes]} for every head (empty list: unclassified)."""
        layers, heads = self.entropy.shape
        out: dict[tuple[int, int], list[str]] = {
            (i, j): [] for i in range(layers) for j in range(heads)
        }
        for name, members in self.classes.items():
            for head in members:
                out[head].append(name)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": {k: v.tolist() for k, v in self.scores.items()},
            "entropy": self.entropy.tolist(),
            "classes": {k: [list(h) for h in v] for k, v in self.classes.items()},
            "thresholds": dict(self.thresholds),
        }


def classify(
    scores: dict[str, Tensor], thresholds: dict[str, float] | None = None
) -> dict[str, list[tuple[int, int]]]:
    """{class: [(layer, head)] with score >= threshold}, in layer, head order."""
    thresholds = {**THRESHOLDS, **(thresholds or {})}
    return {
        name: [tuple(int(i) for i in ij) for ij in (scores[name] >= thresholds[name]).nonzero()]
        for name in SCORES
    }


def head_report(
    model: Any,
    length: int = 32,
    batch: int = 8,
    seed: int = 0,
    thresholds: dict[str, float] | None = None,
) -> HeadReport:
    """Scores, entropy and classes of every head on repeated random tokens."""
    bos = model.tokenizer.bos_token_id
    vocab = model.cfg.d_vocab
    specials = [
        t
        for t in (bos, model.tokenizer.eos_token_id, model.tokenizer.pad_token_id)
        if t is not None
    ]
    first_id = max(specials, default=-1) + 1
    tokens = repeated_tokens(vocab, length, batch, seed, bos, first_id)
    patterns = attention_patterns(model, tokens)
    scores = pattern_scores(patterns, length, n_prefix=0 if bos is None else 1)
    ent = entropy(patterns).mean(1)
    return HeadReport(
        scores, ent, classify(scores, thresholds), {**THRESHOLDS, **(thresholds or {})}
    )


def text_entropy(model: Any, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "layer head"]:
    """Normalised entropy per head [layer, head] on given tokens (e.g. one text)."""
    return entropy(attention_patterns(model, tokens)).mean(1)


def head_hooks(heads: list[tuple[int, int]], ablation: Any) -> dict[str, Any]:
    """{`blocks.L.attn.hook_z`: ablation(heads=[...])} for the given (layer, head)s, e.g. with
    `interp.interventions.zero_ablate`; pass the result to `intervene`."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    return {f"blocks.{layer}.attn.hook_z": ablation(heads=hs) for layer, hs in by_layer.items()}


@torch.inference_mode()
def induction_accuracy(
    model: Any, tokens: Int[Tensor, "batch total"], length: int, hooks: Any = ()
) -> float:
    """Top-1 accuracy of the next-token predictions in the second copy of `repeated_tokens`
    (its tokens 2..length, which only copying can predict), with `hooks` applied."""
    with intervene(model, hooks):
        logits = model(tokens.to(model.cfg.device))
    pred = logits.argmax(-1)[:, :-1].cpu()
    correct = pred == tokens[:, 1:]
    start = tokens.shape[1] - length  # the second copy's first token
    return correct[:, start:].float().mean().item()
