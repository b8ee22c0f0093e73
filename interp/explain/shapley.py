"""SHAP values of the model's own tokens, with `shap`'s Partition and Permutation explainers.

`TokenMasker` is a shap masker over token ids: a masked token becomes the baseline token id, or
is removed (`interp.explain.masking`), so nothing is decoded and re-tokenised. Its clustering for
the Partition explainer is a balanced binary tree over contiguous tokens (neighbouring tokens are
grouped first, as shap's Text masker groups words). The model function is `RowScorer`, batched
on the device with duplicate rows run once. The masks Partition is sure to ask for
(`partition_masks`: with the default 500 evaluations, all of them for texts of up to ~20
tokens) are scored up front in one batch, and shap's calls then find them scored.

Both explainers satisfy efficiency: sum_j values[j] = f(x) - f(all masked).
"""

import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import shap
from jaxtyping import Int
from shap.explainers._partition import make_masks
from torch import Tensor

from interp.explain.attribution import Attribution
from interp.explain.errors import ExplainError
from interp.explain.masking import REMOVED, RowScorer
from interp.explain.target import Target, prepare

ShapMethod = Literal["partition", "permutation"]
SHAP_METHODS: tuple[str, ...] = ("partition", "permutation")


def contiguous_tree(n: int) -> np.ndarray:
    """A scipy-style linkage [n-1, 4] (left, right, height, size) of a balanced binary tree over
    n leaves in order; height is the cluster's share of the leaves."""
    rows: list[list[float]] = []

    def build(lo: int, hi: int) -> int:
        if hi - lo == 1:
            return lo
        mid = (lo + hi + 1) // 2
        left, right = build(lo, mid), build(mid, hi)
        rows.append([left, right, (hi - lo) / n, hi - lo])
        return n + len(rows) - 1

    build(0, n)
    return np.array(rows, dtype=float).reshape(-1, 4)


def partition_masks(n: int, budget: int, batch_size: int) -> np.ndarray:
    """The masks [k, n] (True = kept) that shap's Partition explainer (`fixed_context=None`)
    is sure to evaluate on `contiguous_tree(n)` within `budget` evaluations and rounds of
    `batch_size`: all masked, all kept, then whole levels of its recursion.

    Each queued (context, cluster) pair with cluster = left + right evaluates context + left and
    context + right, and queues (context, left), (context, right), (context + right, left) and
    (context + left, right). A level is sure to be evaluated whole when every level above it
    was, it fits one round and the budget holds it; when the whole tree fits the budget, every
    level is (then the order of evaluation cannot change which masks are evaluated).
    """
    tree = contiguous_tree(n)
    leaves = np.asarray(make_masks(tree).todense(), dtype=bool)
    masks = [np.zeros(n, dtype=bool), np.ones(n, dtype=bool)]
    levels, queue = [], [(np.zeros(n, dtype=bool), 2 * n - 2)]
    while queue:
        level, below = [], []
        for context, node in queue:
            if node < n:
                continue
            left, right = (int(c) for c in tree[node - n, :2])
            with_left, with_right = context | leaves[left], context | leaves[right]
            level += [with_left, with_right]
            below += [(context, left), (context, right), (with_right, left), (with_left, right)]
        if level:
            levels.append(level)
        queue = below
    if sum(map(len, levels)) <= budget:
        return np.array(masks + [m for level in levels for m in level])
    used = 0
    for level in levels:
        if len(level) > batch_size + 1 or used + len(level) > budget:
            break
        masks += level
        used += len(level)
    return np.array(masks)


class TokenMasker(shap.maskers.Masker):
    """A shap masker over one row of token ids: masked ids become `baseline` (or `REMOVED`)."""

    def __init__(self, baseline: int | None) -> None:
        self.fill = REMOVED if baseline is None else int(baseline)
        self.immutable_outputs = True

    def __call__(self, mask: Any, x: np.ndarray) -> tuple[np.ndarray]:
        mask = self._standardize_mask(mask, x)
        return (np.where(mask, x, self.fill)[None],)

    def shape(self, x: np.ndarray) -> tuple[int, int]:
        return (1, len(x))

    def mask_shapes(self, x: np.ndarray) -> list[tuple[int]]:
        return [(len(x),)]

    def clustering(self, x: np.ndarray) -> np.ndarray:
        return contiguous_tree(len(x))


def shap_values(
    ids: Int[Tensor, " pos"],
    score: Callable[[np.ndarray], np.ndarray],
    baseline: int | None,
    method: ShapMethod = "partition",
    max_evals: int = 500,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[np.ndarray, float, float]:
    """(values [pos], f(all masked), f(x)) of `score` (rows [n, pos] -> [n]) at `ids`."""
    if method not in SHAP_METHODS:
        raise ExplainError(f"unknown SHAP method {method!r}; valid: {', '.join(SHAP_METHODS)}")
    x = np.asarray(ids, dtype=np.int64)
    if len(x) == 1:  # one feature: its value is the whole difference
        base, full = score(np.array([[x[0] if baseline is None else baseline], x[:1]]))
        if baseline is None:
            base = score(np.array([[REMOVED]]))[0]
        return np.array([full - base]), float(base), float(full)
    masker = TokenMasker(baseline)
    if method == "partition":
        explainer = shap.PartitionExplainer(score, masker)
        prefetch = getattr(score, "prefetch", None)
        if prefetch is not None:  # one batch for the masks shap is sure to ask for
            masks = partition_masks(len(x), max_evals - 2, batch_size)
            prefetch(np.where(masks, x[None], masker.fill))
    else:
        explainer = shap.PermutationExplainer(score, masker, seed=seed)
    # Permutation needs at least 2 * pos + 1 evaluations for one permutation.
    evals = max(max_evals, 2 * len(x) + 1) if method == "permutation" else max_evals
    exp = explainer(x[None], max_evals=evals, batch_size=batch_size, silent=True)
    values = np.asarray(exp.values[0], dtype=float)
    base = float(np.asarray(exp.base_values).reshape(-1)[0])
    return values, base, base + float(values.sum())


def explain_shap(
    model: Any,
    text: str,
    target: Target,
    method: ShapMethod = "partition",
    baseline: int | None = None,
    max_evals: int = 500,
    batch_size: int = 128,
    seed: int = 0,
    fast: bool = True,
) -> Attribution:
    """SHAP values of each token of `text` for `target` (see the module docstring).

    `baseline`: the token id a masked token becomes (e.g. the pad id), or None to remove masked
    tokens. `max_evals` bounds the model evaluations (shap's own default is 500). `fast=False`
    scores every mask with the bridge itself rather than the prefix-tree path
    (`interp.explain.scoring`; the same values to float32 round-off).
    """
    prepared = prepare(model, text, target)
    scorer = RowScorer(model, prepared, batch_size, fast)
    start = time.perf_counter()
    values, base, full = shap_values(
        prepared.ids, scorer, baseline, method, max_evals, batch_size, seed
    )
    seconds = time.perf_counter() - start
    actual = float(scorer(prepared.ids[None])[0])
    return Attribution(
        f"shap-{method}",
        prepared.tokens,
        prepared.ids.tolist(),
        values,
        base,
        actual,
        target.describe(),
        scorer.evaluations - 1,
        seconds,
        {
            "forward_rows": scorer.forward_rows,
            "positions": scorer.positions,
            "baseline": baseline,
            "sum_check": full,
        },
    )
