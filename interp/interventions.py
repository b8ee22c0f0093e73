"""The toolkit's one hook abstraction: factories of TransformerLens hook functions, a selection
value, a serialisable `Intervention`, and the scoped context manager `intervene` that applies them.

A hook function follows TransformerLens's protocol `fn(activation, *, hook) -> activation | None`
(None keeps the activation). Hooks never modify their input in place; an edited activation is a
copy. Forward hooks edit or read activations; backward hooks (`bwd_hooks=`) see the gradient of
the loss with respect to a hook point's activation, e.g. `grad_store` for attribution patching.

    with intervene(model, {"blocks.1.hook_mlp_out": zero_ablate(rows=[0], positions=[3])}):
        logits = model(tokens)

Every factory takes a selection, `rows=`, `positions=` and `heads=` (see `interp.selection`):
the cartesian product of batch rows x positions x heads, where positions may also be "prompt" or
"generated" and stay right during KV-cached generation (`interp.generation.generate`).

An `Intervention` is the same edit as a value (kind, hook, selection, tensors) that can be saved
to one safetensors file with JSON metadata (`save_interventions`, `load_interventions`) and passed
to `intervene` in place of a `(name, fn)` pair.

Every hook that `intervene` adds is removed when the block exits, also on an exception; a backward
pass over a graph built inside the block must run inside it too (afterwards its hooks raise).
Patching and explainers capture through `intervene`. The fused fast capture path
(`interp.capture`) is for bulk capture only: it differs from this hooked pass by up to 3% of the
largest value in bf16.
"""

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.hooks import check_hook_names
from interp.selection import (
    Index,
    Positions,
    Select,
    SelectionError,
    Where,
    generation_step,
    locate,
    read,
    take,
    write,
)

__all__ = [
    "HookFn",
    "Index",
    "Positions",
    "Select",
    "SelectionError",
    "generation_step",
    "replace",
    "zero_ablate",
    "mean_ablate",
    "add_direction",
    "patch",
    "store",
    "grad_store",
    "Intervention",
    "save_interventions",
    "load_interventions",
    "intervene",
]

HookFn = Callable[..., Tensor | None]

Kind = Literal["zero", "mean", "add", "patch"]
KIND_TENSORS: dict[str, tuple[str, ...]] = {
    "zero": (),
    "mean": ("mean",),
    "add": ("direction",),
    "patch": ("source",),
}
"""The kinds of `Intervention` and the tensors each one needs."""
FORMAT = "interp.interventions/1"
"""The `format` entry of a saved file's safetensors metadata."""


# --- hook factories ---------------------------------------------------------------------------

Edit = Callable[[Tensor, Tensor, Where, str], Tensor]
"""(selected, activation, where, hook name) -> the new values of the selection."""


def _selective(select: Select, edit: Edit) -> HookFn:
    def hook(activation: Tensor, *, hook: Any) -> Tensor | None:
        where = locate(select, activation, hook.name)
        if where is None:  # e.g. "generated" positions during the prompt's forward pass
            return None
        return write(activation, where, edit(read(activation, where), activation, where, hook.name))

    return hook


def replace(
    fn: Callable[[Tensor], Tensor],
    positions: Positions = None,
    *,
    rows: Index = None,
    heads: Index = None,
) -> HookFn:
    """Replace the selection `s` of the activation by `fn(s)`.

    `fn` receives the selection, `[rows, positions, ...]` (`[rows, positions, heads, d_head]` at
    per-head sites; the whole activation when nothing is selected), and must return a tensor of
    the same shape, e.g. an SAE's reconstruction `sae(s)`.
    """

    def edit(selected: Tensor, activation: Tensor, where: Where, name: str) -> Tensor:
        new = fn(selected)
        if new.shape != selected.shape:
            raise ValueError(
                f"replace: fn returned shape {tuple(new.shape)} for an input of shape "
                f"{tuple(selected.shape)} at {name}; it must keep the shape"
            )
        return new

    return _selective(Select(rows, positions, heads), edit)


def zero_ablate(positions: Positions = None, *, rows: Index = None, heads: Index = None) -> HookFn:
    """Set the activation to zero at the selection."""
    return replace(torch.zeros_like, positions, rows=rows, heads=heads)


def mean_ablate(
    mean: Float[Tensor, "*mean_shape"],
    positions: Positions = None,
    *,
    rows: Index = None,
    heads: Index = None,
) -> HookFn:
    """Set the activation to `mean` at the selection.

    `mean` is aligned to the activation's trailing axes and broadcast over size-1 axes: a
    `[d_model]` mean is used at every position, a `[pos, d_model]` mean position by position
    (absolute positions, so also during KV-cached generation), a `[head, d_head]` mean head by head.
    """

    def edit(selected: Tensor, activation: Tensor, where: Where, name: str) -> Tensor:
        return take(mean, where, activation, "mean", name)

    return _selective(Select(rows, positions, heads), edit)


def add_direction(
    direction: Float[Tensor, " d_model"],
    scale: float = 1.0,
    positions: Positions = None,
    *,
    rows: Index = None,
    heads: Index = None,
) -> HookFn:
    """Add `scale * direction` to the selection (steering); `direction` broadcasts against the
    selection's trailing axes (`[d_model]`, or `[d_head]` / `[heads, d_head]` per head)."""

    def edit(selected: Tensor) -> Tensor:
        return selected + scale * direction.to(selected.device, selected.dtype)

    return replace(edit, positions, rows=rows, heads=heads)


def patch(
    source: Float[Tensor, "batch pos ..."],
    positions: Positions = None,
    *,
    rows: Index = None,
    heads: Index = None,
) -> HookFn:
    """Replace the selection by the same entries of `source` (the hook's activation from another
    run, e.g. a clean or resampled input). `source` is indexed like the activation; a size-1
    batch axis is shared by all rows, so one clean run can patch many rows of a folded batch.
    Resample ablation is `patch` with activations from a random other input."""

    def edit(selected: Tensor, activation: Tensor, where: Where, name: str) -> Tensor:
        return take(source, where, activation, "patch: source", name)

    return _selective(Select(rows, positions, heads), edit)


def store(into: dict[str, Tensor], key: str) -> HookFn:
    """Capture hook: `into[key] = activation`, unchanged and without a copy."""

    def hook(activation: Tensor, *, hook: Any) -> None:
        into[key] = activation

    return hook


def grad_store(into: dict[str, Tensor], key: str) -> HookFn:
    """Backward hook: `into[key] = d loss / d activation`, shaped like the activation
    (`[batch, pos, head, d_head]` at `attn.hook_z`). Pass it in `bwd_hooks=`."""

    def hook(grad: Tensor, *, hook: Any) -> None:
        into[key] = grad

    return hook


# --- interventions as values ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Intervention:
    """One edit as a value: what (`kind`), where (`hook` and the selection) and its tensors.

    kinds and their tensors: "zero" (none), "mean" ({"mean": t}, as `mean_ablate`),
    "add" ({"direction": t} times `scale`, as `add_direction`), "patch" ({"source": t}).
    Equal when the metadata and every tensor are equal.
    """

    kind: Kind
    hook: str
    tensors: Mapping[str, Tensor] = field(default_factory=dict)
    scale: float = 1.0
    rows: Index = None
    positions: Positions = None
    heads: Index = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_TENSORS:
            raise InterpError(f"unknown kind {self.kind!r}; valid kinds: {', '.join(KIND_TENSORS)}")
        want, got = set(KIND_TENSORS[self.kind]), set(self.tensors)
        if want != got or not all(isinstance(t, Tensor) for t in self.tensors.values()):
            raise InterpError(
                f"kind {self.kind!r} takes the tensors {sorted(want)}, got {sorted(got)} "
                f"(kinds and their tensors: {KIND_TENSORS})"
            )
        if self.kind != "add" and self.scale != 1.0:
            raise InterpError(f"scale applies to 'add' only, not to {self.kind!r}")
        object.__setattr__(self, "tensors", dict(self.tensors))
        select = Select(self.rows, self.positions, self.heads)
        for axis in ("rows", "positions", "heads"):
            object.__setattr__(self, axis, getattr(select, axis))

    @property
    def select(self) -> Select:
        return Select(self.rows, self.positions, self.heads)

    def hook_fn(self) -> HookFn:
        """The hook function that applies this intervention at `self.hook`."""
        where = {"positions": self.positions, "rows": self.rows, "heads": self.heads}
        t = self.tensors
        if self.kind == "zero":
            return zero_ablate(**where)
        if self.kind == "mean":
            return mean_ablate(t["mean"], **where)
        if self.kind == "add":
            return add_direction(t["direction"], self.scale, **where)
        return patch(t["source"], **where)

    def to_dict(self) -> dict[str, Any]:
        """JSON metadata; the tensors appear by name, shape and dtype only."""
        tensors = {
            k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in self.tensors.items()
        }
        head = {"kind": self.kind, "hook": self.hook, "scale": self.scale, "tensors": tensors}
        return head | self.select.to_dict()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> "Intervention":
        return cls(d["kind"], d["hook"], tensors, d["scale"], **Select.from_dict(d).__dict__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Intervention) or self.to_dict() != other.to_dict():
            return False
        return all(torch.equal(v, other.tensors[k].to(v.device)) for k, v in self.tensors.items())

    __hash__ = None  # type: ignore[assignment]


def save_interventions(
    path: str | Path, interventions: Sequence[Intervention], overwrite: bool = False
) -> Path:
    """Write interventions to one safetensors file (atomically; never pickle).

    Tensor `k` of intervention `i` is stored as "{i}.{k}"; the header metadata holds
    `format` and `interventions`, the JSON list of each `to_dict()`.
    """
    from safetensors.torch import save

    from sae.fsutil import write_bytes_atomically

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    tensors = {
        f"{i}.{k}": t.detach().cpu().contiguous()
        for i, iv in enumerate(interventions)
        for k, t in iv.tensors.items()
    }
    meta = {"format": FORMAT, "interventions": json.dumps([iv.to_dict() for iv in interventions])}
    write_bytes_atomically(path, save(tensors, metadata=meta))
    return path


def load_interventions(path: str | Path) -> list[Intervention]:
    """The interventions `save_interventions` wrote, in order, tensors on the CPU."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise InterpError(
                f"{path} is not an interventions file (metadata format {meta.get('format')!r}, "
                f"expected {FORMAT!r}); write it with save_interventions"
            )
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    out = []
    for i, d in enumerate(json.loads(meta["interventions"])):
        mine = {k: tensors[f"{i}.{k}"] for k in d["tensors"]}
        out.append(Intervention.from_dict(d, mine))
    return out


# --- applying hooks ---------------------------------------------------------------------------

Hooks = (
    Mapping[str, HookFn | Sequence[HookFn]]
    | Sequence[tuple[str, HookFn] | Intervention]
    | Intervention
)


class _Named:
    """The hook point as a hook function sees it: under the name the caller asked for (the
    bridge's own point may be called e.g. 'blocks.0.hook_out' for 'blocks.0.hook_resid_post')."""

    def __init__(self, name: str, point: Any) -> None:
        self.name = name
        self._point = point

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._point, attr)


def _named(name: str, fn: HookFn) -> HookFn:
    def hook(tensor: Tensor, *, hook: Any) -> Tensor | None:
        return fn(tensor, hook=_Named(name, hook))

    return hook


def _guarded(name: str, fn: HookFn, live: list[bool]) -> HookFn:
    # torch keeps a module's backward hooks in the graph that a forward pass built, so a graph
    # built inside the block would call them after it closed: refuse, rather than edit silently.
    def hook(grad: Tensor, *, hook: Any) -> Tensor | None:
        if not live[0]:
            raise InterpError(
                f"the backward hook on {name} ran after its `intervene` block closed; call "
                ".backward() (or torch.autograd.grad) inside the block"
            )
        return fn(grad, hook=_Named(name, hook))

    return hook


def _pairs(hooks: Hooks) -> list[tuple[str, HookFn]]:
    if isinstance(hooks, Intervention):
        hooks = [hooks]
    if isinstance(hooks, Mapping):
        pairs = []
        for name, fns in hooks.items():
            fns = list(fns) if isinstance(fns, Sequence) else [fns]
            pairs.extend((name, fn) for fn in fns)
    else:
        pairs = [(p.hook, p.hook_fn()) if isinstance(p, Intervention) else tuple(p) for p in hooks]
    for pair in pairs:
        if len(pair) != 2 or not callable(pair[1]):
            raise TypeError(
                f"each hook must be (hook_name, fn) with a callable fn or an Intervention, "
                f"got {pair!r}"
            )
    return pairs


def _registered_once(model: Any, pairs: list[tuple[str, HookFn]]) -> list[tuple[Any, HookFn]]:
    """On a TransformerBridge, the hooks as one (filter, dispatcher) pair: the bridge rebuilds
    its hook dictionary (~20 ms on the default model) for every named hook it adds, but once per
    filter. The dispatcher runs each hook point's functions in the given order, each seeing the
    previous one's output, as named hooks would. Other models get the pairs unchanged."""
    if len(pairs) < 2 or getattr(model, "_hook_registry", None) is None:
        return pairs
    if getattr(model, "compatibility_mode", False):  # hooks then see aliased hook points
        return pairs
    points = model.hook_dict
    by_point: dict[int, list[HookFn]] = {}
    for name, fn in pairs:
        by_point.setdefault(id(points[name]), []).append(fn)

    def wanted(name: str) -> bool:
        return id(points.get(name)) in by_point

    def dispatch(tensor: Tensor, *, hook: Any) -> Tensor | None:
        out = None
        for fn in by_point[id(hook)]:
            new = fn(tensor if out is None else out, hook=hook)
            out = out if new is None else new
        return out

    return [(wanted, dispatch)]


@contextmanager
def intervene(model: Any, hooks: Hooks = (), bwd_hooks: Hooks = ()) -> Iterator[Any]:
    """Apply forward and backward hooks for the duration of a `with` block, then remove them all.

    `hooks` is `{name: fn}`, `{name: [fn, ...]}`, or a list of `(name, fn)` pairs and
    `Intervention`s; `bwd_hooks` takes the same forms (e.g. `{name: grad_store(grads, name)}`).
    Names are checked against `model.hook_dict` first (an unknown name raises `HookNameError`
    naming the closest valid ones; nothing is added). Several functions on one hook run in the
    given order, each seeing the previous one's output. Hook functions see `hook.name` as the name
    they were given. Yields the model.
    """
    fwd, bwd = _pairs(hooks), _pairs(bwd_hooks)
    if fwd or bwd:  # an empty intervention is a plain run
        check_hook_names(model, [name for name, _ in fwd + bwd])
    live = [True]
    try:
        with model.hooks(
            fwd_hooks=_registered_once(model, [(n, _named(n, fn)) for n, fn in fwd]),
            bwd_hooks=_registered_once(model, [(n, _guarded(n, fn, live)) for n, fn in bwd]),
        ):
            yield model
    finally:
        live[0] = False
