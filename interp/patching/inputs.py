"""Checked inputs of patching: prompt pairs of one token length, single-token answers.

Clean and corrupt prompts must tokenise to the same length, since a patch moves an activation
from position p of one run to position p of the other. When they do not, the error names both
token lists; `align="left"` pads the shorter prompt at the front with the pad token (so the
prompts end at the same position), which is an approximation: the padding is attended to.
"""

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError

Align = Literal["error", "left"]
ALIGNS = ("error", "left")


class PatchingError(InterpError):
    """Bad input to patching: prompts of different lengths, a multi-token answer, an unknown
    grid, method or task."""


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _pieces(model: Any, ids: Sequence[int]) -> list[str]:
    return [model.tokenizer.decode([int(i)]) for i in ids]


def to_tokens(model: Any, prompts: str | Sequence[str] | Tensor) -> Int[Tensor, "batch pos"]:
    """Token ids [batch, pos] with BOS first (a tensor passes through unchanged); prompts of
    one batch must share a length."""
    if isinstance(prompts, Tensor):
        tokens = prompts if prompts.ndim == 2 else prompts[None]
        return tokens.to(_device(model))
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        raise PatchingError("no prompts given; pass at least one clean and one corrupt prompt")
    rows = [model.to_tokens(t)[0] for t in texts]
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise PatchingError(
            f"the prompts of one batch tokenise to different lengths {sorted(lengths)}; "
            "pass prompts of one token length"
        )
    return torch.stack(rows).to(_device(model))


def _left_pad(tokens: Tensor, width: int, pad: int) -> Tensor:
    fill = torch.full((tokens.shape[0], width - tokens.shape[1]), pad, dtype=tokens.dtype)
    return torch.cat([fill.to(tokens.device), tokens], dim=1)


def prompt_pair(
    model: Any,
    clean: str | Sequence[str] | Tensor,
    corrupt: str | Sequence[str] | Tensor,
    align: Align = "error",
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """(clean tokens, corrupt tokens), both [batch, pos]; `PatchingError` naming both token
    lists when their lengths differ and `align` is "error"."""
    if align not in ALIGNS:
        raise PatchingError(f"unknown align {align!r}; valid: {', '.join(ALIGNS)}")
    a, b = to_tokens(model, clean), to_tokens(model, corrupt)
    if a.shape[0] != b.shape[0]:
        raise PatchingError(
            f"{a.shape[0]} clean prompts but {b.shape[0]} corrupt ones; pass them in pairs"
        )
    if a.shape[1] != b.shape[1]:
        if align == "left":
            pad = model.tokenizer.pad_token_id
            pad = model.tokenizer.eos_token_id if pad is None else pad
            width = max(a.shape[1], b.shape[1])
            return _left_pad(a, width, pad), _left_pad(b, width, pad)
        raise PatchingError(
            f"clean and corrupt prompts tokenise to different lengths: clean {a.shape[1]} "
            f"tokens {_pieces(model, a[0])}, corrupt {b.shape[1]} tokens "
            f"{_pieces(model, b[0])}; a patch needs the same positions in both. Reword one "
            "(e.g. names of one token each), or pass align='left' (--align left) to pad the "
            "shorter one at the front"
        )
    return a, b


def single_token(model: Any, text: str, what: str = "answer") -> int:
    """The id of `text` if it is exactly one token (no BOS), else `PatchingError` naming its
    tokens."""
    ids = model.to_tokens(text, prepend_bos=False)[0].tolist()
    if len(ids) != 1:
        raise PatchingError(
            f"{what} {text!r} is {len(ids)} tokens {_pieces(model, ids)}, not one; pass a "
            "single token (with its leading space, e.g. ' Mary')"
        )
    return int(ids[0])


def token_labels(model: Any, tokens: Int[Tensor, " pos"]) -> list[str]:
    """'i:piece' labels of one row of tokens, for plot axes."""
    return [f"{i}:{p}" for i, p in enumerate(_pieces(model, tokens.tolist()))]
