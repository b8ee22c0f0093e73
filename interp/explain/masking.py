"""Masking at the model's own tokens: no string is re-tokenised anywhere.

A mask over the explained tokens (True = kept) turns the token ids into a row of the same length
in which each masked token is the baseline token id, or `REMOVED` when masked tokens are removed.
`pack` turns such rows into model input: the fixed prefix (BOS), then the kept tokens in order,
right-padded. Causal attention means the padding after a row's last token cannot change that
token's logits, so each row is scored at its own last position (`last`) and positions stay
0, 1, 2, ... as in an unpadded run.

`RowScorer` is the model function the explainers call: rows [n, pos] -> scores [n], batched on
the model's device, with duplicate rows computed once (also across calls). On a bridge over an
HF model the packed rows are scored over their prefix tree (`interp.explain.scoring`), so a
beginning that many rows share is computed once; `last_logits` on padded batches is the path
for every other model and the reference the tree path is tested against.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.explain.errors import ExplainError
from interp.explain.scoring import tree_scorer
from interp.explain.target import Prepared

REMOVED = -1
"""The id standing for a removed token in a masked row."""
NODES_PER_ROW = 16
"""Tree nodes a pass holds per row of `batch_size` (2,048 at the default 128). On the 2-core CPU
passes of 1,024 to 8,192 nodes ran within the noise of each other (2,048 a few % ahead), and
one pass of all 18,500 nodes of LIME's 5,000 masks of a 16-token text ~35% slower."""

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

    Rows are deduplicated and packed (`pack`). On a TransformerBridge over an HF model they are
    scored over their prefix tree by the plain HF modules (`interp.explain.scoring`; a shared
    beginning is computed once, up to `batch_size * NODES_PER_ROW` tree nodes a pass); otherwise
    (another model, a hook active on the bridge when the scorer is made, `fast=False`) by the
    bridge itself, sorted by
    length (little padding is computed) and run `batch_size` rows at a time. `evaluations`
    counts the rows asked for, `forward_rows` the distinct rows scored, `positions` the token
    positions the model computed.
    """

    def __init__(
        self, model: Any, prepared: Prepared, batch_size: int = 128, fast: bool = True
    ) -> None:
        self.model, self.prepared, self.batch_size, self.fast = model, prepared, batch_size, fast
        tok = model.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else int(prepared.ids[-1])
        self.evaluations = 0
        self.forward_rows = 0
        self.positions = 0
        self.cache: dict[bytes, float] = {}
        # Decided once per explanation: the checks walk the bridge's modules.
        self.tree = tree_scorer(model) if fast else None

    def scores(self, rows: Int[Tensor, "n pos"]) -> Float[Tensor, " n"]:
        """The score of each row; rows scored before (in this scorer) are not run again."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        self.evaluations += len(rows)
        return self._lookup(rows)

    def prefetch(self, rows: Int[Tensor, "n pos"]) -> None:
        """Score `rows` now, in one go, for later calls to find (not counted as evaluations):
        an explainer that knows its masks ahead of time gets one large batch."""
        self._lookup(torch.as_tensor(np.asarray(rows), dtype=torch.long))

    def _lookup(self, rows: Int[Tensor, "n pos"]) -> Float[Tensor, " n"]:
        keys = [row.tobytes() for row in rows.numpy()]
        first: dict[bytes, int] = {}  # each row not yet scored, at its first occurrence
        for i, key in enumerate(keys):
            if key not in self.cache and key not in first:
                first[key] = i
        if first:
            values = self._run(rows[torch.tensor(list(first.values()))]).tolist()
            self.cache.update(zip(first, values, strict=True))
        return torch.tensor([self.cache[key] for key in keys])

    def _run(self, unique: Int[Tensor, "n pos"]) -> Float[Tensor, " n"]:
        """The scores of distinct rows, by the tree path or the bridge (class docstring)."""
        self.forward_rows += len(unique)
        tokens, last = pack(unique, self.prepared.prefix, self.pad)
        if self.tree is not None:
            out, nodes = self.tree.scores(
                tokens, last + 1, self.prepared.score, self.batch_size * NODES_PER_ROW
            )
            self.positions += nodes
            return out
        order = torch.argsort(last)  # similar lengths share a batch: little padding is computed
        out = torch.empty(len(unique))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = int(last[idx].max()) + 1
            logits = last_logits(self.model, tokens[idx, :width], last[idx])
            out[idx] = self.prepared.score(logits).float().cpu()
            self.positions += len(idx) * width
        return out

    def __call__(self, rows: Any) -> np.ndarray:
        return self.scores(rows).double().numpy()
