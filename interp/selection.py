"""Selections of batch rows x positions x heads, resolved against one activation at a time.

A `Select` picks the cartesian product of rows x positions x heads:
- activations are `[batch, pos, ...]`; per-head sites are `[batch, pos, head, d_head]`
  (`attn.hook_z`, `hook_q`, ...) and attention patterns are `[batch, head, query_pos, key_pos]`
  (`hook_pattern`, `hook_attn_scores`: positions select query positions);
- each of rows, positions and heads is None (all), an int, a slice, a list of ints, or an index
  or boolean tensor; an int keeps its axis (`a[:, [3]]`, not `a[:, 3]`);
- positions also take "all", "prompt" or "generated".

Positions count from the start of the sequence. During KV-cached generation a forward pass sees
only the new token; `generation_step(offset, prompt_len)` (set by `interp.generation.generate` around
each forward pass) says where it is, so a selection keeps meaning the same tokens. Outside
generation the whole input is prompt, so "generated" selects nothing. A selection out of range
raises `SelectionError` naming the hook, the shape and the valid range.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from interp.errors import InterpError

Index = int | slice | Sequence[int] | Tensor | None
"""A selection along one axis: None (all), an int, a slice, a list of ints, an index or bool
tensor."""
Positions = Index | Literal["all", "prompt", "generated"]
POSITION_WORDS = ("all", "prompt", "generated")


class SelectionError(InterpError, IndexError):
    """A row, position or head selection that does not fit the activation it is applied to."""


_Norm = None | str | slice | tuple[int, ...]


def _normalise(value: Any, axis: str) -> _Norm:
    """None, a position word, a slice of ints, or a tuple of ints (hashable, JSON-friendly)."""
    if value is None or (isinstance(value, str) and value == "all" and axis == "positions"):
        return None
    if isinstance(value, str):
        if axis == "positions" and value in POSITION_WORDS:
            return value
        words = f" or one of {POSITION_WORDS}" if axis == "positions" else ""
        raise SelectionError(f"unknown {axis} selection {value!r}; pass ints, a slice{words}")
    if isinstance(value, slice):
        bounds = (value.start, value.stop, value.step)
        if not all(v is None or _is_int(v) for v in bounds) or (value.step or 1) < 1:
            raise SelectionError(f"{axis} slice {value} must have int bounds and a step >= 1")
        return value
    if isinstance(value, Tensor):
        if value.ndim > 1:
            raise SelectionError(f"a {axis} tensor must be 1-D, got shape {tuple(value.shape)}")
        if value.dtype == torch.bool:
            value = value.flatten().nonzero().flatten()
        return tuple(int(i) for i in value.flatten().tolist())
    values = [value] if _is_int(value) else value
    if not isinstance(values, Sequence) or not all(_is_int(v) for v in values):
        raise SelectionError(
            f"bad {axis} selection {value!r}; pass None, an int, a slice, a list of ints or a tensor"
        )
    return tuple(int(v) for v in values)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _to_json(value: _Norm) -> Any:
    if isinstance(value, slice):
        return {"start": value.start, "stop": value.stop, "step": value.step}
    return list(value) if isinstance(value, tuple) else value


def _from_json(value: Any) -> Any:
    return slice(value["start"], value["stop"], value["step"]) if isinstance(value, dict) else value


@dataclass(frozen=True)
class Select:
    """Batch rows x positions x heads of an activation (see the module docstring); None is all.

    Values are normalised on construction: ints and tensors become tuples of ints, "all" None.
    """

    rows: Index = None
    positions: Positions = None
    heads: Index = None

    def __post_init__(self) -> None:
        for axis in ("rows", "positions", "heads"):
            object.__setattr__(self, axis, _normalise(getattr(self, axis), axis))

    @property
    def is_all(self) -> bool:
        return self.rows is None and self.positions is None and self.heads is None

    def to_dict(self) -> dict[str, Any]:
        return {axis: _to_json(getattr(self, axis)) for axis in ("rows", "positions", "heads")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Select":
        return cls(**{axis: _from_json(d.get(axis)) for axis in ("rows", "positions", "heads")})


@dataclass(frozen=True)
class GenerationStep:
    """Where a forward pass is in a generated sequence: its first token's absolute position
    (the tokens already in the KV cache; 0 without a cache) and the prompt's length."""

    offset: int
    prompt_len: int


_STEP: ContextVar[GenerationStep | None] = ContextVar("interp_generation_step", default=None)


@contextmanager
def generation_step(offset: int, prompt_len: int) -> Iterator[GenerationStep]:
    """Tell position selections that the next forward pass starts at absolute position `offset`
    of a sequence whose first `prompt_len` tokens are the prompt. Used by `interp.generation.generate`
    around each forward pass."""
    step = GenerationStep(offset, prompt_len)
    token = _STEP.set(step)
    try:
        yield step
    finally:
        _STEP.reset(token)


class Where(NamedTuple):
    """A selection resolved against one activation: broadcastable index tensors for its leading
    axes (`local`), the same with positions counted from the sequence start (`absolute`)."""

    local: tuple[Tensor, ...]
    absolute: tuple[Tensor, ...]
    whole: bool
    positions_axis: int


def _axes(name: str, ndim: int) -> tuple[str, ...]:
    if name.endswith(("hook_pattern", "hook_attn_scores")):
        return ("rows", "heads", "positions")
    return ("rows", "positions", "heads") if ndim >= 4 else ("rows", "positions")


def _plain_index(sel: _Norm, size: int, axis: str, where: str) -> Tensor:
    if sel is None or isinstance(sel, slice):
        return torch.arange(size)[sel if sel is not None else slice(None)]
    idx = torch.tensor(sel, dtype=torch.long)
    bad = idx[(idx >= size) | (idx < -size)]
    if len(bad):
        raise SelectionError(
            f"{axis} {list(sel)} out of range at {where}; valid {axis} are 0..{size - 1} "
            f"(or -{size}..-1)"
        )
    return idx % size


def _position_index(sel: _Norm, n: int, where: str) -> tuple[Tensor, int]:
    """(local indices into this forward's n positions, offset of its first position)."""
    step = _STEP.get()
    offset, prompt = (0, n) if step is None else (step.offset, step.prompt_len)
    total = offset + n
    if sel is None:
        absolute = torch.arange(total)
    elif sel == "prompt":
        absolute = torch.arange(min(prompt, total))
    elif sel == "generated":
        absolute = torch.arange(prompt, total)
    elif isinstance(sel, slice):
        absolute = torch.arange(total)[sel]
    else:
        absolute = torch.tensor(sel, dtype=torch.long)
        # During generation a position past the end is one not generated yet, not an error.
        bad = absolute[(absolute < -total) | ((absolute >= total) & (step is None))]
        if len(bad):
            raise SelectionError(
                f"positions {list(sel)} out of range at {where}; valid positions are "
                f"0..{total - 1} (or -{total}..-1)"
            )
        absolute = torch.where(absolute < 0, absolute + total, absolute)
    return absolute[(absolute >= offset) & (absolute < total)] - offset, offset


def locate(select: Select, activation: Tensor, name: str) -> Where | None:
    """`select` resolved against `activation` at hook `name`; None when it selects nothing."""
    shape = tuple(activation.shape)
    where = f"{name} (shape {shape})"
    axes = _axes(name, activation.ndim)
    if select.heads is not None and "heads" not in axes:
        raise SelectionError(
            f"heads= needs a per-head site, [batch, pos, head, d_head] such as "
            f"'blocks.0.attn.hook_z' or a pattern; {where} has no head axis"
        )
    local, absolute = [], []
    for axis, kind in enumerate(axes):
        view = [1] * len(axes)
        view[axis] = -1
        if kind == "positions":
            idx, offset = _position_index(select.positions, shape[axis], where)
        else:
            idx, offset = _plain_index(getattr(select, kind), shape[axis], kind, where), 0
        if idx.numel() == 0:
            return None
        idx = idx.to(activation.device)
        local.append(idx.view(view))
        absolute.append((idx + offset).view(view))
    return Where(tuple(local), tuple(absolute), select.is_all, axes.index("positions"))


def read(activation: Tensor, where: Where) -> Tensor:
    return activation if where.whole else activation[where.local]


def write(activation: Tensor, where: Where, new: Tensor) -> Tensor:
    """A copy of `activation` whose selection is `new` (shaped like the selection)."""
    if where.whole:
        return new.to(activation.dtype)
    out = activation.clone()
    out[where.local] = new.to(activation.dtype)
    return out


def take(value: Tensor, where: Where, activation: Tensor, what: str, name: str) -> Tensor:
    """`value`, broadcast against the activation's full sequence, at the selection.

    `value` is aligned to the activation's trailing axes. Each axis has size 1 (broadcast) or the
    activation's size; its position axis has size 1 or reaches every selected absolute position
    (a per-position mean from longer contexts, or a source during KV-cached generation).
    """
    k, ndim, shape = len(where.absolute), activation.ndim, tuple(activation.shape)
    if value.ndim > ndim:
        raise SelectionError(f"{what} has shape {tuple(value.shape)}, more axes than {name}'s")
    v = value.to(activation.device).reshape((1,) * (ndim - value.ndim) + tuple(value.shape))
    for axis in range(ndim):
        size = v.shape[axis]
        if axis == where.positions_axis:
            need = int(where.absolute[axis].max()) + 1
            fits = size == 1 or size >= need
        else:
            need, fits = shape[axis], size in (1, shape[axis])
        if not fits:
            raise SelectionError(
                f"{what} has shape {tuple(value.shape)} but {name} has shape {shape} (axis "
                f"{axis} needs size 1 or {need}); capture it on inputs of the same shape"
            )
    index = tuple(i if v.shape[axis] > 1 else i * 0 for axis, i in enumerate(where.absolute))
    selection = torch.broadcast_shapes(*(i.shape for i in where.local))
    return v[index].expand(*selection, *shape[k:])
