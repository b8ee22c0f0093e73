"""The toolkit's one hook abstraction: small factories of TransformerLens hook functions and a
scoped context manager that applies them.

A hook function follows TransformerLens's protocol `fn(activation, *, hook) -> activation | None`
(None keeps the activation). Factories take an optional `positions` selection that indexes the
position axis (dim 1) of `[batch, pos, ...]` activations: an int, a slice, a list of ints, or an
index or boolean tensor. Hooks never modify their input in place; an edited activation is a copy.

    with intervene(model, {"blocks.1.hook_mlp_out": zero_ablate()}):
        logits = model(tokens)

Every hook that `intervene` adds is removed when the block exits, also on an exception.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.hooks import check_hook_names

HookFn = Callable[..., Tensor | None]
Positions = int | slice | Sequence[int] | Tensor | None
Hooks = Mapping[str, HookFn | Sequence[HookFn]] | Sequence[tuple[str, HookFn]]


def _index(positions: Positions) -> Any:
    # An int would drop the position axis; a one-element list keeps [batch, 1, ...].
    if isinstance(positions, int):
        return [positions]
    if isinstance(positions, Tensor) and positions.dtype != torch.bool:
        return positions.long()
    return positions


def _write(activation: Tensor, positions: Positions, new: Tensor) -> Tensor:
    """A copy of `activation` whose selected positions are `new` (shaped like the selection)."""
    if positions is None:
        return new.to(activation.dtype)
    out = activation.clone()
    out[:, _index(positions)] = new.to(activation.dtype)
    return out


def replace(fn: Callable[[Tensor], Tensor], positions: Positions = None) -> HookFn:
    """Replace the activation `a` by `fn(a)` at the selected positions.

    `fn` receives the selection `a[:, positions]` (the whole activation when `positions` is None)
    and must return a tensor of the same shape, e.g. an SAE's reconstruction `sae(a)`.
    """

    def hook(activation: Tensor, *, hook: Any) -> Tensor:
        selected = activation if positions is None else activation[:, _index(positions)]
        new = fn(selected)
        if new.shape != selected.shape:
            raise ValueError(
                f"replace: fn returned shape {tuple(new.shape)} for an input of shape "
                f"{tuple(selected.shape)} at {hook.name}; it must keep the shape"
            )
        return _write(activation, positions, new)

    return hook


def zero_ablate(positions: Positions = None) -> HookFn:
    """Set the activation to zero at the selected positions."""
    return replace(torch.zeros_like, positions)


def mean_ablate(mean: Float[Tensor, "*mean_shape"], positions: Positions = None) -> HookFn:
    """Set the activation to `mean` at the selected positions.

    `mean` is broadcast against the whole `[batch, pos, ...]` activation before the selection, so
    a `[d_model]` mean is used at every position and a `[pos, d_model]` mean position by position.
    """

    def hook(activation: Tensor, *, hook: Any) -> Tensor:
        full = mean.to(activation.device).expand_as(activation)
        new = full.clone() if positions is None else full[:, _index(positions)]
        return _write(activation, positions, new)

    return hook


def add_direction(
    direction: Float[Tensor, " d_model"], scale: float = 1.0, positions: Positions = None
) -> HookFn:
    """Add `scale * direction` to the activation at the selected positions (steering)."""

    def edit(selected: Tensor) -> Tensor:
        return selected + scale * direction.to(selected.device, selected.dtype)

    return replace(edit, positions)


def patch(source: Float[Tensor, "batch pos ..."], positions: Positions = None) -> HookFn:
    """Replace the activation by `source` (the same hook's activation from another run, e.g.
    a clean or resampled input) at the selected positions. Resample ablation is `patch` with
    activations from a random other input."""

    def hook(activation: Tensor, *, hook: Any) -> Tensor:
        if source.shape != activation.shape:
            raise ValueError(
                f"patch: source has shape {tuple(source.shape)} but {hook.name} has "
                f"{tuple(activation.shape)}; capture the source on inputs of the same shape"
            )
        src = source.to(activation.device)
        new = src.clone() if positions is None else src[:, _index(positions)]
        return _write(activation, positions, new)

    return hook


def store(into: dict[str, Tensor], key: str) -> HookFn:
    """Capture hook: `into[key] = activation`, unchanged and without a copy."""

    def hook(activation: Tensor, *, hook: Any) -> None:
        into[key] = activation

    return hook


def _pairs(hooks: Hooks) -> list[tuple[str, HookFn]]:
    if isinstance(hooks, Mapping):
        pairs = []
        for name, fns in hooks.items():
            fns = list(fns) if isinstance(fns, Sequence) else [fns]
            pairs.extend((name, fn) for fn in fns)
    else:
        pairs = [tuple(p) for p in hooks]
    for pair in pairs:
        if len(pair) != 2 or not callable(pair[1]):
            raise TypeError(f"each hook must be (hook_name, fn) with a callable fn, got {pair!r}")
    return pairs


@contextmanager
def intervene(model: Any, hooks: Hooks) -> Iterator[Any]:
    """Apply hook functions for the duration of a `with` block, then remove them all.

    `hooks` is `{name: fn}`, `{name: [fn, ...]}` or `[(name, fn), ...]`. Names are checked
    against `model.hook_dict` first (an unknown name raises `HookNameError` naming the closest
    valid ones; nothing is added). Several functions on one hook run in the given order, each
    seeing the previous one's output. Yields the model.
    """
    pairs = _pairs(hooks)
    if pairs:  # an empty intervention is a plain run
        check_hook_names(model, [name for name, _ in pairs])
    with model.hooks(fwd_hooks=pairs):
        yield model
