"""Patching metrics: per-row scores of a folded batch's logits, built on `interp.metrics`, and the
normalisation that puts the corrupt baseline at 0 and the clean run at 1.

A folded batch holds the prompt pairs repeated once per patch: row r belongs to pair
`pairs[r]` (`r % n_pairs`). A `Metric` maps (logits [rows, pos, vocab], pairs [rows]) to one
float32 score per row, so per-pair answers, positions and clean logits follow their row. The
score of a patch is the mean over its rows (over the prompt pairs).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp import metrics
from interp.patching.inputs import PatchingError

MetricFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Metric:
    """A named patching metric: `metric(logits, pairs) -> [rows]` float32 scores.

    `pairs` defaults to `arange(rows)` (one row per prompt pair, an unfolded batch).
    """

    name: str
    fn: MetricFn

    def __call__(
        self, logits: Float[Tensor, "rows pos vocab"], pairs: Int[Tensor, " rows"] | None = None
    ) -> Float[Tensor, " rows"]:
        if pairs is None:
            pairs = torch.arange(logits.shape[0])
        return self.fn(logits, pairs.to(logits.device))


def _per_pair(value: int | Tensor, device: torch.device) -> int | Tensor:
    return value.to(device) if isinstance(value, Tensor) else value


def _rows(value: int | Tensor, pairs: Tensor) -> int | Tensor:
    """`value[pairs]` for a per-pair tensor; an int is shared by every row."""
    return value.to(pairs.device)[pairs] if isinstance(value, Tensor) else value


def logit_diff_metric(
    correct: int | Int[Tensor, " pairs"],
    incorrect: int | Int[Tensor, " pairs"],
    position: int | Int[Tensor, " pairs"] = -1,
) -> Metric:
    """LD = logits[position, correct] - logits[position, incorrect] per row
    (`interp.metrics.logit_diff`), e.g. the indirect object's logit minus the subject's."""

    def fn(logits: Tensor, pairs: Tensor) -> Tensor:
        return metrics.logit_diff(
            logits, _rows(correct, pairs), _rows(incorrect, pairs), _rows(position, pairs)
        )

    return Metric("logit_diff", fn)


def prob_metric(target: int | Int[Tensor, " pairs"], position: int | Tensor = -1) -> Metric:
    """p = softmax(logits[position])[target] per row (`interp.metrics.token_prob`)."""

    def fn(logits: Tensor, pairs: Tensor) -> Tensor:
        return metrics.token_prob(logits, _rows(target, pairs), _rows(position, pairs))

    return Metric("token_prob", fn)


def ce_metric(
    targets: Int[Tensor, "pairs pos"], mask: Bool[Tensor, "pairs pos-1"] | None = None
) -> Metric:
    """CE = mean over the masked predictions t of -log p(targets[t+1] | run[:t+1]) per row
    (`interp.metrics.next_token_ce` and `masked_mean`, in nats; lower is better).

    `targets` are the tokens to predict (the clean tokens: in a corrupt run they are what the
    clean run would continue with); `mask[b, t]` selects the predictions of token t+1 that count
    (all when None), e.g. the second copy of a repeated sequence.
    """

    def fn(logits: Tensor, pairs: Tensor) -> Tensor:
        ce = metrics.next_token_ce(logits, targets.to(logits.device)[pairs])
        keep = torch.ones_like(ce, dtype=torch.bool) if mask is None else mask.to(ce.device)[pairs]
        return (ce * keep).sum(-1) / keep.sum(-1)

    return Metric("next_token_ce", fn)


def kl_metric(
    clean_logits: Float[Tensor, "pairs pos vocab"], positions: int | list[int] | None = -1
) -> Metric:
    """KL(clean || run) of the next-token distributions (`interp.metrics.next_token_kl`), mean
    over `positions` (one int, a list, or None for every position) per row; 0 on the clean run,
    lower is better."""
    n = clean_logits.shape[1]
    index = (
        list(range(n))
        if positions is None
        else [positions]
        if isinstance(positions, int)
        else positions
    )
    index = [i % n for i in index]

    def fn(logits: Tensor, pairs: Tensor) -> Tensor:
        # next_token_kl drops the last position (it scores predictions of a next token); one
        # repeated column at the end keeps every selected position in.
        sel = [*index, index[-1]]
        p = clean_logits.to(logits.device)[pairs][:, sel]
        return metrics.next_token_kl(p, logits[:, sel]).mean(-1)

    return Metric("next_token_kl", fn)


def normalise(
    values: Float[Tensor, "*shape"], clean: float, corrupt: float
) -> Float[Tensor, "*shape"]:
    """(values - corrupt) / (clean - corrupt): 0 at the corrupt baseline, 1 at the clean run.

    Works for metrics where lower is better too (CE, KL): the clean value is still 1.
    """
    if clean == corrupt:
        raise PatchingError(
            f"the metric is {clean:.6g} on both the clean and the corrupt run, so it cannot be "
            "normalised; choose prompts or answers that the model tells apart"
        )
    return (values - corrupt) / (clean - corrupt)
