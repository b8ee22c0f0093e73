"""Attribution patching (gradient x activation difference) and its integrated-gradients variant.

Attribution patching estimates every exact patch of a grid at once, to first order:

    effect(cell) ~ sum over the cell's entries of (a_clean - a_corrupt) * d metric / d a,

the gradient taken on the corrupt run (Nanda 2023; Syed et al. 2023): two forward passes and one
backward pass in all. The integrated-gradients variant (`steps` > 0, as EAP-IG, Hanna et al.
2024) averages the gradient over runs whose input embeddings are interpolated from the corrupt
to the clean prompt, alpha = (i + 1/2) / steps for i < steps (midpoints), folded into one batch
of steps x pairs rows; it follows the metric's curvature that one gradient misses.

Activations are recorded with `interventions.store` inside `intervene`, and their gradients
taken with `torch.autograd.grad` (nothing accumulates in the parameters' `.grad`). On a
TransformerBridge every hook registration rebuilds its hook dictionary (about 20 ms on the
default model), so the passes are few: attribution runs the clean and corrupt prompts as one
batch, one forward and one backward pass with one hook per layer.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import Tensor

from interp.interventions import intervene
from interp.patching.exact import _mean, _result, forward, run_and_store
from interp.patching.grids import Grid, make_grid
from interp.patching.inputs import PatchingError, prompt_pair
from interp.patching.metric import Metric
from interp.patching.result import PatchResult

EMBED = "hook_embed"


@contextmanager
def differentiable(model: Any) -> Iterator[None]:
    """Grad mode on, and every parameter requiring grad for the block, so that activations
    carry a graph even in a model whose parameters were frozen (restored afterwards, also on an
    error). Gradients are taken with `torch.autograd.grad` with respect to activations only, so
    nothing accumulates in the parameters' `.grad`."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


def _interpolate(clean: Tensor, corrupt: Tensor, alphas: Tensor):
    """Hook for the embedding output: rows of step i are corrupt + alpha_i (clean - corrupt), a
    leaf that requires grad. Rows are step-major: row i*B + b is step i of pair b."""

    def hook(act: Tensor, *, hook: Any) -> Tensor:
        a = alphas.to(act.device, act.dtype).repeat_interleave(clean.shape[0])[:, None, None]
        c, r = clean.repeat(len(alphas), 1, 1), corrupt.repeat(len(alphas), 1, 1)
        return (r + a * (c - r)).detach().requires_grad_(True)  # the path IG integrates along

    return hook


def _kept(into: dict[str, Tensor], key: str):
    """Like `interventions.store`, but the hook returns the activation, unchanged in value: at a
    hook point that reshapes what hooks see (a bridge's `attn.hook_z`), the returned tensor is
    what flows on, so the stored one is in the graph that `torch.autograd.grad` differentiates."""

    def hook(activation: Tensor, *, hook: Any) -> Tensor:
        # A new tensor (a view): the hook point's own output, so that a gradient taken with
        # respect to it flows through this hook point only, not through other users of the
        # same tensor (a norm's input is also the residual stream's skip path).
        into[key] = activation.view_as(activation)
        return into[key]

    return hook


class Gradients(NamedTuple):
    """Activations of both runs and the metric's gradient at each hook, each [pairs, pos, ...],
    and the plain runs' logits [2 * pairs, pos, vocab] (clean rows first)."""

    clean: dict[str, Tensor]
    corrupt: dict[str, Tensor]
    grads: dict[str, Tensor]
    logits: Tensor


def _grads(
    model: Any,
    tokens: Tensor,
    hooks: list,
    names: Sequence[str],
    metric: Metric,
    rows: slice,
    pairs: Tensor,
    scale: float,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """One forward and one backward pass: ({hook: activation}, {hook: d total / d activation},
    logits) where total = scale * sum of the metric over `rows` of the batch."""
    acts: dict[str, Tensor] = {}
    with differentiable(model), intervene(model, [*hooks, *((n, _kept(acts, n)) for n in names)]):
        logits = forward(model, tokens)
        total = metric(logits[rows], pairs).float().sum() * scale
        grads = torch.autograd.grad(total, [acts[n] for n in names])
    acts = {n: a.detach() for n, a in acts.items()}
    return acts, dict(zip(names, grads, strict=True)), logits.detach()


def gradients(
    model: Any,
    clean_tokens: Tensor,
    corrupt_tokens: Tensor,
    names: Sequence[str],
    metric: Metric,
    steps: int = 0,
) -> Gradients:
    """Both runs' activations and the gradient at `names`, each [pairs, pos, ...]:
    d mean-metric / d activation on the corrupt run (`steps` 0), or averaged over `steps` runs
    whose embeddings are interpolated from corrupt to clean (integrated gradients).

    `steps` 0 is one forward and one backward pass over the clean and corrupt prompts together
    (rows are independent, and the metric reads the corrupt rows only); IG adds one forward
    pass that records both runs' embeddings."""
    n = corrupt_tokens.shape[0]
    both = torch.cat([clean_tokens, corrupt_tokens])
    if steps == 0:
        acts, grads, logits = _grads(
            model, both, [], names, metric, slice(n, None), torch.arange(n), 1 / n
        )
        grads = {k: g[n:] for k, g in grads.items()}
        return Gradients(_half(acts, n, 0), _half(acts, n, 1), grads, logits)
    logits, recorded = run_and_store(model, both, [*names, EMBED])
    alphas = (torch.arange(steps) + 0.5) / steps
    embed = [(EMBED, _interpolate(recorded[EMBED][:n], recorded[EMBED][n:], alphas))]
    pairs = torch.arange(n).repeat(steps)
    tokens = corrupt_tokens.repeat(steps, 1)
    _, grads, _ = _grads(model, tokens, embed, names, metric, slice(None), pairs, 1 / (n * steps))
    mean = {k: g.view(steps, n, *g.shape[1:]).sum(0) for k, g in grads.items()}
    return Gradients(_half(recorded, n, 0), _half(recorded, n, 1), mean, logits)


def _half(acts: dict[str, Tensor], n: int, which: int) -> dict[str, Tensor]:
    return {k: (a[:n] if which == 0 else a[n:]) for k, a in acts.items() if k != EMBED}


def _reduce(x: Tensor, grid: Grid) -> Tensor:
    """Per-cell sums of x [pairs, pos, ...] (an activation difference times a gradient)."""
    x = x.sum(0)  # over pairs: the gradient already carries the mean's 1/pairs
    x = x.sum(-1)  # over d_model or d_head
    if not grid.by_position:
        x = x.sum(0)
    return x


def attribution_patch(
    model: Any,
    clean: str | Sequence[str] | Tensor,
    corrupt: str | Sequence[str] | Tensor,
    metric: Metric,
    grid: str = "resid",
    *,
    steps: int = 0,
    by_position: bool | None = None,
) -> PatchResult:
    """First-order estimates of `exact_patch`'s grid: `values` = corrupt metric + estimated
    effect of each patch. `steps` 0 is attribution patching, > 0 integrated gradients."""
    if steps < 0:
        raise PatchingError(f"steps must be >= 0 (0: plain attribution), got {steps}")
    a, b = prompt_pair(model, clean, corrupt)
    g = make_grid(model, grid, a.shape[1], by_position)
    names = g.hooks()
    got = gradients(model, a, b, names, metric, steps)
    effect = torch.stack(
        [_reduce((got.clean[n] - got.corrupt[n]).float() * got.grads[n].float(), g) for n in names]
    ).cpu()
    n = a.shape[0]
    c, r = _mean(metric, got.logits[:n]), _mean(metric, got.logits[n:])
    method = "ig" if steps else "attribution"
    return _result(model, g, r + effect, method, metric, c, r, r, a, {"steps": steps})
