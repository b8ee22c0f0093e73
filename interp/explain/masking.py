"""Masking at the model's own tokens: no string is re-tokenised anywhere.

A mask over the explained tokens (True = kept) turns the token ids into a row of the same length
in which each masked token is the baseline token id, or `REMOVED` when masked tokens are removed.
`pack` turns such rows into model input: the fixed prefix (BOS), then the kept tokens in order,
right-padded. Causal attention means the padding after a row's last token cannot change that
token's logits, so each row is scored at its own last position (`last`) and positions stay
0, 1, 2, ... as in an unpadded run.

`RowScorer` is the model function the explainers call: rows [n, pos] -> scores [n], batched on
the model's device, with duplicate rows computed once.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.explain.errors import ExplainError
from interp.explain.target import Prepared

REMOVED = -1
"""The id standing for a removed token in a masked row."""

RowScore = Callable[[Int[Tensor, "n pos"]], Float[Tensor, " n"]]
"""A batched function of masked rows (token ids, `REMOVED` for removed ones) to scores."""


def mask_rows(
    ids: Int[Tensor, " pos"], masks: Bool[Tensor, "n pos"], baseline: int | None
) -> Int[Tensor, "n pos"]:
    """row[i, j] = ids[j] where masks[i, j], else the baseline id (`REMOVED` when None)."""
    masks = torch.as_tensor(masks, dtype=torch.bool)
    if masks.ndim != 2 or masks.shape[1] != len(ids):
        raise ExplainError(f"masks must be [n, {len(ids)}], got {list(masks.shape)}")
    fill = REMOVED if baseline is None else int(baseline)
    return torch.where(masks, ids[None].long(), torch.full_like(masks, fill, dtype=torch.long))


def pack(
    rows: Int[Tensor, "n pos"], prefix: Int[Tensor, " k"], pad: int
) -> tuple[Int[Tensor, "n width"], Int[Tensor, " n"]]:
    """(tokens, last): prefix + each row's kept tokens in order, right-padded with `pad`, and the
    index of each row's last real token."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    keep = rows != REMOVED
    lengths = keep.sum(1)
    if len(prefix) == 0 and bool((lengths == 0).any()):
        raise ExplainError(
            "a mask removed every token of a text without BOS; use a baseline token instead "
            "(--baseline ID) or a model that prepends BOS"
        )
    width = int(lengths.max()) if len(rows) else 0
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    kept = rows.gather(1, order)
    kept[torch.arange(width)[None] >= lengths[:, None]] = pad
    tokens = torch.cat([prefix[None].expand(len(rows), -1).long(), kept], dim=1)
    return tokens, len(prefix) + lengths - 1


def unpack(tokens: Int[Tensor, "n width"], last: Int[Tensor, " n"], k: int) -> list[list[int]]:
    """The explained tokens each packed row holds (the inverse of `pack`, for checking)."""
    return [tokens[i, k : int(last[i]) + 1].tolist() for i in range(len(tokens))]


@torch.inference_mode()
def last_logits(
    model: Any, tokens: Int[Tensor, "n width"], last: Int[Tensor, " n"]
) -> Float[Tensor, "n vocab"]:
    """[n, vocab] logits at each row's `last` position: one forward pass, no hooks, with the
    unembedding computed only at the positions some row ends at (`logits_to_keep`)."""
    keep, column = torch.unique(last, return_inverse=True)
    device = model.cfg.device
    logits = model(tokens.to(device), logits_to_keep=keep.to(device))
    return logits[torch.arange(len(tokens), device=logits.device), column.to(logits.device)]


class RowScorer:
    """The model as a batched function of masked rows: `scorer(rows) -> scores` (numpy, float64).

    Rows are deduplicated, packed (`pack`), sorted by length (little padding is computed) and run
    `batch_size` at a time on the model's device. `evaluations` counts the rows asked
    for, `forward_rows` the rows actually run.
    """

    def __init__(self, model: Any, prepared: Prepared, batch_size: int = 128) -> None:
        self.model, self.prepared, self.batch_size = model, prepared, batch_size
        tok = model.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else int(prepared.ids[-1])
        self.evaluations = 0
        self.forward_rows = 0

    def scores(self, rows: Int[Tensor, "n pos"]) -> Float[Tensor, " n"]:
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
        self.evaluations += len(rows)
        self.forward_rows += len(unique)
        tokens, last = pack(unique, self.prepared.prefix, self.pad)
        order = torch.argsort(last)  # similar lengths share a batch: little padding is computed
        out = torch.empty(len(unique))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = int(last[idx].max()) + 1
            logits = last_logits(self.model, tokens[idx, :width], last[idx])
            out[idx] = self.prepared.score(logits).float().cpu()
        return out[inverse]

    def __call__(self, rows: Any) -> np.ndarray:
        return self.scores(rows).double().numpy()
