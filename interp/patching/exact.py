"""Exact activation patching and ablation, with the patches folded into the batch.

TransformerLens's `patching` runs one forward pass per patch. Here a chunk of k patches is one
forward pass over the prompt pairs repeated k times: the rows of patch j are `j*B .. j*B+B-1`
(B prompt pairs), and one hook per layer (through `interp.interventions.intervene`) writes each
patch's source entries into its own rows. Chunks are sized to a memory budget
(`rows_per_chunk`); a grid of any size runs, a chunk at a time.

`patch_one_at_a_time` is the reference path: one forward pass per cell with the
`interventions.patch` factory, as TransformerLens does it; tests check that the two agree.

The same engine does ablation: a cell's source is zero, a mean over a reference set, or a
resampled run's activation, written into the clean run.
"""

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.interventions import HookFn, intervene, patch, store
from interp.patching.grids import Cell, Grid, make_grid
from interp.patching.inputs import PatchingError, prompt_pair, to_tokens, token_labels
from interp.patching.metric import Metric
from interp.patching.result import PatchResult, axis_labels

Progress = Callable[[int, int], None]
"""on_progress(cells done, cells in all)."""
DEFAULT_MEMORY_MB = 1024
AblationKind = Literal["zero", "mean", "resample"]
ABLATIONS = ("zero", "mean", "resample")


def forward(model: Any, tokens: Tensor) -> Tensor:
    """Logits of one plain forward pass (no KV cache: a bridge would build one per call)."""
    if getattr(model, "original_model", None) is not None:
        return model(tokens, use_cache=False)
    return model(tokens)


@torch.no_grad()
def run_and_store(
    model: Any, tokens: Int[Tensor, "batch pos"], names: Sequence[str]
) -> tuple[Float[Tensor, "batch pos vocab"], dict[str, Tensor]]:
    """(logits, {hook: activation}) of one forward pass."""
    acts: dict[str, Tensor] = {}
    with intervene(model, [(n, store(acts, n)) for n in names]):
        logits = forward(model, tokens)
    return logits, acts


def bytes_per_row(model: Any, n_pos: int) -> int:
    """A rough peak of one batch row's forward pass in float32: the logits twice (log_softmax
    in the metric), a dozen residual-width tensors, the MLP's hidden layer and the attention
    scores, all over the row's positions."""
    cfg = model.cfg
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * cfg.d_model)
    width = 2 * cfg.d_vocab + 12 * cfg.d_model + 3 * d_mlp + 2 * cfg.n_heads * n_pos
    return 4 * n_pos * int(width)


def rows_per_chunk(model: Any, n_pos: int, n_pairs: int, memory_mb: float) -> int:
    """Patches per forward pass that fit `memory_mb` (at least one: a chunk never dies of its
    own size; one patch of a huge batch is as small as patching gets)."""
    rows = int(memory_mb * 2**20) // bytes_per_row(model, n_pos)
    return max(1, rows // n_pairs)


def _scatter(
    source: Tensor, cells: list[tuple[int, int | None, int | None]], n_pairs: int
) -> HookFn:
    """Hook: rows of local patch j take `source`'s entries at the cell's position and head.

    `source` is [1 or B, 1 or pos, ...]; size-1 axes broadcast (a zero or mean ablation)."""
    local = torch.tensor([j for j, _, _ in cells])
    rows = (local[:, None] * n_pairs + torch.arange(n_pairs)[None]).flatten()
    pair = torch.arange(n_pairs).repeat(len(cells))
    pos = None if cells[0][1] is None else torch.tensor([p for _, p, _ in cells])
    head = None if cells[0][2] is None else torch.tensor([h for _, _, h in cells])
    pos = None if pos is None else pos.repeat_interleave(n_pairs)
    head = None if head is None else head.repeat_interleave(n_pairs)

    def hook(act: Tensor, *, hook: Any) -> Tensor:
        src = source.to(act.device, act.dtype).expand(n_pairs, *act.shape[1:])
        out = act.clone()
        r, b = rows.to(act.device), pair.to(act.device)
        if pos is None and head is None:
            out[r] = src[b]
        elif head is None:
            out[r, pos] = src[b, pos]
        elif pos is None:
            out[r, :, head] = src[b, :, head]
        else:
            out[r, pos, head] = src[b, pos, head]
        return out

    return hook


@torch.no_grad()
def patch_cells(
    model: Any,
    tokens: Int[Tensor, "pairs pos"],
    sources: dict[int, Tensor],
    grid: Grid,
    metric: Metric,
    memory_mb: float = DEFAULT_MEMORY_MB,
    on_progress: Progress | None = None,
) -> Float[Tensor, "*grid"]:
    """The metric (mean over prompt pairs) of `tokens` run with each cell of `grid` patched from
    `sources[layer]` ([1 or pairs, 1 or pos, ...] at the grid's hook), folded into the batch."""
    cells = grid.cells()
    n_pairs = tokens.shape[0]
    k = rows_per_chunk(model, tokens.shape[1], n_pairs, memory_mb)
    out = torch.empty(len(cells))
    for start in range(0, len(cells), k):
        chunk = cells[start : start + k]
        out[start : start + len(chunk)] = _run_chunk(model, tokens, sources, grid, chunk, metric)
        if on_progress is not None:
            on_progress(start + len(chunk), len(cells))
    return out.view(grid.shape)


def _run_chunk(
    model: Any,
    tokens: Tensor,
    sources: dict[int, Tensor],
    grid: Grid,
    chunk: list[Cell],
    metric: Metric,
) -> Tensor:
    n_pairs = tokens.shape[0]
    by_layer: dict[int, list] = {}
    for j, (layer, p, h) in enumerate(chunk):
        by_layer.setdefault(layer, []).append((j, p, h))
    hooks = [(grid.hook(lay), _scatter(sources[lay], cs, n_pairs)) for lay, cs in by_layer.items()]
    batch = tokens.repeat(len(chunk), 1)
    pairs = torch.arange(n_pairs).repeat(len(chunk))
    with intervene(model, hooks):
        scores = metric(forward(model, batch), pairs)
    return scores.float().view(len(chunk), n_pairs).mean(1).cpu()


@torch.no_grad()
def patch_one_at_a_time(
    model: Any, tokens: Tensor, sources: dict[int, Tensor], grid: Grid, metric: Metric
) -> Float[Tensor, "*grid"]:
    """The reference path of `patch_cells`: one forward pass per cell, each through the
    `interventions.patch` factory."""
    values = []
    for layer, p, h in grid.cells():
        pos = None if p is None else [p]
        heads = None if h is None else [h]
        with intervene(model, {grid.hook(layer): patch(sources[layer], pos, heads=heads)}):
            values.append(metric(forward(model, tokens)).float().mean().item())
    return torch.tensor(values).view(grid.shape)


def _result(model, grid, values, method, metric, clean, corrupt, start, tokens, meta=None):
    labels = axis_labels(grid.axes, token_labels(model, tokens[0]), grid.n_layers, grid.n_heads)
    return PatchResult(
        values, grid.axes, labels, grid.name, method, metric.name, clean, corrupt, start, meta or {}
    )


def exact_patch(
    model: Any,
    clean: str | Sequence[str] | Tensor,
    corrupt: str | Sequence[str] | Tensor,
    metric: Metric,
    grid: str = "resid",
    *,
    by_position: bool | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    folded: bool = True,
    on_progress: Progress | None = None,
) -> PatchResult:
    """Activation patching: run `corrupt` with one cell of `grid` at a time taken from the
    `clean` run, and score each with `metric` (mean over the prompt pairs).

    `folded=False` runs the reference path, one forward pass per cell.
    """
    a, b = prompt_pair(model, clean, corrupt)
    g = make_grid(model, grid, a.shape[1], by_position)
    n = a.shape[0]  # one pass over both prompts: each hook registration costs a bridge ~20 ms
    logits, acts = run_and_store(model, torch.cat([a, b]), g.hooks())
    clean_logits, corrupt_logits = logits[:n], logits[n:]
    sources = {lay: acts[g.hook(lay)][:n] for lay in range(g.n_layers)}
    if folded:
        values = patch_cells(model, b, sources, g, metric, memory_mb, on_progress)
    else:
        values = patch_one_at_a_time(model, b, sources, g, metric)
    c, r = _mean(metric, clean_logits), _mean(metric, corrupt_logits)
    return _result(model, g, values, "exact", metric, c, r, r, a)


@torch.no_grad()
def forward_no_grad(model: Any, tokens: Tensor) -> Tensor:
    return forward(model, tokens)


def _mean(metric: Metric, logits: Tensor) -> float:
    return float(metric(logits).float().mean())


def ablation_sources(
    model: Any,
    grid: Grid,
    kind: str,
    reference: Tensor | None,
) -> dict[int, Tensor]:
    """Per-layer sources of an ablation: zeros, the mean over `reference`'s rows and positions,
    or `reference`'s own activations (resample: pair b takes reference row b)."""
    if kind not in ABLATIONS:
        raise PatchingError(f"unknown ablation {kind!r}; valid: {', '.join(ABLATIONS)}")
    if kind != "zero" and reference is None:
        raise PatchingError(
            f"{kind} ablation needs reference tokens (a set to average or resample)"
        )
    hooks = grid.hooks()
    if kind == "zero":
        width = model.cfg.n_heads if grid.name == "heads" else None
        return {lay: _zeros(model, grid, width) for lay in range(grid.n_layers)}
    _, acts = run_and_store(model, reference, hooks)
    if kind == "mean":
        return {lay: acts[h].mean(dim=(0, 1), keepdim=True) for lay, h in enumerate(hooks)}
    return {lay: acts[h] for lay, h in enumerate(hooks)}


def _zeros(model: Any, grid: Grid, n_heads: int | None) -> Tensor:
    dev = next(model.parameters()).device
    if grid.name == "heads":
        return torch.zeros(1, 1, n_heads, int(model.cfg.d_head), device=dev)
    return torch.zeros(1, 1, int(model.cfg.d_model), device=dev)


def ablate(
    model: Any,
    tokens: str | Sequence[str] | Tensor,
    metric: Metric,
    grid: str = "heads",
    *,
    kind: AblationKind = "mean",
    reference: str | Sequence[str] | Tensor | None = None,
    corrupt: str | Sequence[str] | Tensor | None = None,
    by_position: bool = False,
    memory_mb: float = DEFAULT_MEMORY_MB,
    on_progress: Progress | None = None,
) -> PatchResult:
    """Importance by ablation: run `tokens` (the clean prompts) with one cell of `grid` at a
    time set to zero, to the mean over `reference` (default: `tokens` themselves), or to a
    resampled run's activation (`reference`, default `corrupt`; row b for prompt b).

    `values` are the ablated runs' metric; `start` is the clean run's. With `corrupt` given,
    `corrupt` is that run's metric (for `normalised`), else NaN.
    """
    a = to_tokens(model, tokens)
    ref = reference if reference is not None else (corrupt if kind == "resample" else a)
    ref_tokens = None
    if ref is not None:
        ref_tokens = prompt_pair(model, a, ref)[1] if kind == "resample" else to_tokens(model, ref)
        if kind == "resample" and ref_tokens.shape[0] != a.shape[0]:
            raise PatchingError("resample ablation needs one reference prompt per prompt")
    g = make_grid(model, grid, a.shape[1], by_position)
    sources = ablation_sources(model, g, kind, ref_tokens)
    values = patch_cells(model, a, sources, g, metric, memory_mb, on_progress)
    clean = _mean(metric, forward_no_grad(model, a))
    bad = float("nan")
    if corrupt is not None:
        bad = _mean(metric, forward_no_grad(model, prompt_pair(model, a, corrupt)[1]))
    return _result(
        model, g, values, f"{kind}-ablation", metric, clean, bad, clean, a, {"kind": kind}
    )
