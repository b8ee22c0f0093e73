"""Gradient x input and integrated gradients of the target with respect to the token embeddings.

Both run through `interp.interventions.intervene`: a `replace` hook on `hook_embed` swaps the
embeddings of the explained tokens for a leaf tensor (interpolated, for IG) whose gradient
`torch.autograd.grad` then reads; the model's parameters get no `.grad`.

- gradient x input: value_j = e_j . d f / d e_j, at the text's own embeddings e.
- integrated gradients (Sundararajan et al. 2017): value_j = (e_j - b_j) .
  integral_0^1 d f / d e_j (b + a (e - b)) da, by Gauss-Legendre quadrature on `steps` points;
  the baseline b is the baseline token's embedding (zero when masked tokens are removed).
  Completeness: sum_j value_j = f(e) - f(b), up to the quadrature error.
The prefix (BOS) is never interpolated, as it is never masked by SHAP and LIME.
"""

import time
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.explain.attribution import Attribution
from interp.explain.errors import ExplainError
from interp.explain.target import Prepared, Target, prepare
from interp.interventions import intervene, replace

EMBED_HOOK = "hook_embed"


def _embedding_gradients(
    model: Any, prepared: Prepared, alphas: Float[Tensor, " n"], baseline: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(grads [n, pos, d], embeds [pos, d], scores [n]) with row i's explained embeddings at
    baseline + alphas[i] (embeds - baseline)."""
    k = len(prepared.prefix)
    tokens = prepared.full.expand(len(alphas), -1).to(model.cfg.device)
    held: dict[str, Tensor] = {}

    def interpolate(embeds: Tensor) -> Tensor:
        e = embeds[:, k:].detach()
        a = alphas.to(e.device, e.dtype)[:, None, None]
        leaf = (baseline.to(e) + a * (e - baseline.to(e))).requires_grad_()
        held["leaf"], held["embeds"] = leaf, e[0]
        return torch.cat([embeds[:, :k].detach(), leaf], dim=1)

    with torch.enable_grad(), intervene(model, {EMBED_HOOK: replace(interpolate)}):
        logits = model(tokens, logits_to_keep=1)[:, -1]
        scores = prepared.score(logits)
        (grads,) = torch.autograd.grad(scores.sum(), held["leaf"])
    return grads.float(), held["embeds"].float(), scores.detach().float()


def _baseline_embedding(model: Any, prepared: Prepared, baseline: int | None) -> Tensor:
    w = model.W_E if hasattr(model, "W_E") else model.embed.W_E
    if baseline is None:
        return torch.zeros(len(prepared.ids), w.shape[-1])
    return w[baseline].detach().float().cpu().expand(len(prepared.ids), -1)


def _attribution(
    method: str,
    prepared: Prepared,
    values: Tensor,
    base: float,
    full: float,
    n: int,
    start: float,
    extra: dict[str, Any],
) -> Attribution:
    return Attribution(
        method,
        prepared.tokens,
        prepared.ids.tolist(),
        values.detach().cpu().double().numpy(),
        base,
        full,
        prepared.target.describe(),
        n,
        time.perf_counter() - start,
        extra,
    )


def explain_gradient(model: Any, text: str, target: Target) -> Attribution:
    """Gradient x input: e_j . d f / d e_j per token (`base_value` is f with zero embeddings
    left out: 0.0, as the method has no baseline)."""
    prepared = prepare(model, text, target)
    start = time.perf_counter()
    zero = torch.zeros(len(prepared.ids), 1)
    grads, embeds, scores = _embedding_gradients(model, prepared, torch.ones(1), zero)
    values = (grads[0] * embeds).sum(-1)
    return _attribution("gradient", prepared, values, 0.0, float(scores[0]), 1, start, {})


def explain_ig(
    model: Any,
    text: str,
    target: Target,
    baseline: int | None = None,
    steps: int = 32,
    batch_size: int = 64,
) -> Attribution:
    """Integrated gradients (module docstring); `extra["completeness_gap"]` is
    sum(values) - (f(x) - f(baseline))."""
    if steps < 1:
        raise ExplainError(f"steps must be at least 1, got {steps}")
    prepared = prepare(model, text, target)
    start = time.perf_counter()
    base_embed = _baseline_embedding(model, prepared, baseline)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor((nodes + 1) / 2, dtype=torch.float32)
    weights = torch.tensor(weights / 2, dtype=torch.float32)
    total = torch.zeros(len(prepared.ids), base_embed.shape[-1])
    for i in range(0, steps, batch_size):
        grads, embeds, _ = _embedding_gradients(
            model, prepared, alphas[i : i + batch_size], base_embed
        )
        total += (weights[i : i + batch_size, None, None] * grads.cpu()).sum(0)
    _, _, ends = _embedding_gradients(model, prepared, torch.tensor([0.0, 1.0]), base_embed)
    values = ((embeds.cpu() - base_embed) * total).sum(-1)
    base, full = float(ends[0]), float(ends[1])
    gap = float(values.sum()) - (full - base)
    extra = {"steps": steps, "baseline": baseline, "completeness_gap": gap}
    return _attribution("ig", prepared, values, base, full, steps + 2, start, extra)
