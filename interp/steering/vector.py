"""`SteeringVector`: per-layer directions plus the metadata that says what they mean.

A vector holds one direction per layer at one hook site (`blocks.{L}.hook_resid_post` by
default), the model it was made for (`model_id`, `d_model`, `n_layers`), how it was made
(`method`, `concept`, `source_hash` = sha256 of the contrastive texts, `positions`), and its
scale convention:

- "absolute": `scale * direction` is added, the direction as extracted (its raw norm);
- "relative": `scale * resid_norm[L] * direction / |direction|` is added, where `resid_norm[L]` is
  the mean norm of the residual stream at that layer over the source texts. Scale 1 then adds a
  vector as long as the typical residual, whatever the method's own normalisation: the same
  multiplier means the same strength for mean-difference, PCA, probe and SAE directions.

`effective(scale)` is what is added, per layer. Saved as safetensors (tensor `directions`
[layers, d_model], float32; the JSON metadata in the header under `interp.steering`), loaded back
exactly; the loader never executes anything and names what is wrong with a bad file.

Applying goes through `interp.interventions`: `interventions(scale, positions)` are
`Intervention`s of kind "add" (serialisable, usable in `interp.generation.generate`), and
`apply(model, ...)` is a context manager. `steer(model, [(v, s), ...])` composes several
vectors; `ablate(model, direction)` projects a direction out of the residual stream at every
layer (Arditi et al. 2024).
"""

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.interventions import HookFn, Intervention, Positions, intervene
from interp.interventions import replace as replace_hook

FORMAT = "interp.steering/1"
"""The `format` entry of a saved vector's safetensors metadata."""
Convention = Literal["absolute", "relative"]
CONVENTIONS = ("absolute", "relative")
DEFAULT_SITE = "hook_resid_post"


class SteeringError(InterpError):
    """A steering vector or file that cannot be used as asked (another model, a layer outside
    the model, a malformed file, an unbalanced contrastive set)."""


def hook_name(layer: int, site: str = DEFAULT_SITE) -> str:
    """`blocks.{layer}.{site}`, the TransformerLens name of a block's hook."""
    return f"blocks.{layer}.{site}"


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """One direction per layer at one hook site, with what it was made from and for."""

    directions: Float[Tensor, "layers d_model"]
    """Row i is the direction at `layers[i]`, as extracted (float32, CPU)."""
    layers: tuple[int, ...]
    model_id: str | None
    """The model it was made for (`interp.models.model_id`); None for an imported file that
    names only an architecture (`model_hint`)."""
    d_model: int
    n_layers: int | None = None
    """The model's number of blocks, when known."""
    site: str = DEFAULT_SITE
    """The hook site in every layer (`blocks.{L}.{site}`)."""
    method: str = "mean-diff"
    convention: Convention = "relative"
    resid_norms: tuple[float, ...] = ()
    """Mean residual norm at each layer over the source texts (needed by "relative")."""
    concept: str | None = None
    source_hash: str | None = None
    positions: str = "last"
    """The token positions the directions were read at ("last", "mean")."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Anything else JSON-serialisable (an SAE's folder and feature, a GGUF's model hint)."""

    def __post_init__(self) -> None:
        d = self.directions
        if not isinstance(d, Tensor) or d.ndim != 2:
            raise SteeringError(f"directions must be a [layers, d_model] tensor, got {d!r}")
        object.__setattr__(self, "directions", d.detach().to("cpu", torch.float32).contiguous())
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "resid_norms", tuple(float(x) for x in self.resid_norms))
        object.__setattr__(self, "extra", dict(self.extra))
        if d.shape != (len(self.layers), self.d_model):
            raise SteeringError(
                f"directions have shape {list(d.shape)} for {len(self.layers)} layers of width "
                f"{self.d_model}; expected [{len(self.layers)}, {self.d_model}]"
            )
        if len(set(self.layers)) != len(self.layers) or any(x < 0 for x in self.layers):
            raise SteeringError(f"layers must be distinct indices >= 0, got {list(self.layers)}")
        if self.convention not in CONVENTIONS:
            raise SteeringError(
                f"unknown scale convention {self.convention!r}; valid: {', '.join(CONVENTIONS)}"
            )
        if self.convention == "relative" and len(self.resid_norms) != len(self.layers):
            raise SteeringError(
                "a 'relative' vector needs one residual norm per layer "
                f"({len(self.layers)}), got {len(self.resid_norms)}"
            )
        if not torch.isfinite(self.directions).all():
            raise SteeringError("directions contain NaN or inf")
        if self.n_layers is not None and self.layers and max(self.layers) >= self.n_layers:
            raise SteeringError(
                f"layer {max(self.layers)} is outside a model of {self.n_layers} blocks"
            )

    # --- what is added -----------------------------------------------------------------------

    @property
    def raw_norms(self) -> tuple[float, ...]:
        """|direction| per layer, as extracted."""
        return tuple(self.directions.norm(dim=-1).tolist())

    def unit(self) -> Float[Tensor, "layers d_model"]:
        """Directions normalised to length 1 (a zero direction stays zero)."""
        norms = self.directions.norm(dim=-1, keepdim=True)
        return self.directions / norms.clamp_min(1e-12)

    def effective(self, scale: float = 1.0) -> Float[Tensor, "layers d_model"]:
        """The vectors added at each layer at `scale`, under the vector's convention."""
        if self.convention == "absolute":
            return scale * self.directions
        norms = torch.tensor(self.resid_norms, dtype=torch.float32)[:, None]
        return scale * norms * self.unit()

    def select(self, layers: Sequence[int] | None) -> "SteeringVector":
        """The same vector restricted to `layers` (each must be one of its layers)."""
        if layers is None:
            return self
        missing = [x for x in layers if x not in self.layers]
        if missing:
            raise SteeringError(
                f"layers {missing} are not in this vector; it has layers {list(self.layers)}"
            )
        idx = [self.layers.index(x) for x in layers]
        norms = tuple(self.resid_norms[i] for i in idx) if self.resid_norms else ()
        return replace(
            self, directions=self.directions[idx], layers=tuple(layers), resid_norms=norms
        )

    def hook_names(self) -> list[str]:
        return [hook_name(layer, self.site) for layer in self.layers]

    # --- checks against a model --------------------------------------------------------------

    def check_model(self, model: Any, model_id: str | None = None) -> None:
        """`SteeringError` unless the vector fits `model`: its width, its layers, and (when both
        are known) the model it was made for."""
        width, blocks = int(model.cfg.d_model), int(model.cfg.n_layers)
        if width != self.d_model:
            raise SteeringError(
                f"the vector has width {self.d_model} but the model's residual stream has "
                f"{width}; it was made for {self.model_id or 'another model'}"
            )
        outside = [x for x in self.layers if x >= blocks]
        if outside:
            raise SteeringError(
                f"layers {outside} are outside the model (valid layers are 0..{blocks - 1})"
            )
        if model_id is not None and self.model_id is not None and model_id != self.model_id:
            raise SteeringError(
                f"the vector was made for model {self.model_id!r}, not {model_id!r}; extract "
                "it again on this model (or pass the right --model)"
            )

    # --- application -------------------------------------------------------------------------

    def interventions(
        self, scale: float = 1.0, positions: Positions = None, *, rows: Any = None
    ) -> list[Intervention]:
        """One "add" `Intervention` per layer: `scale * effective(1)[L]` at `positions`
        (None/"all", "prompt", "generated", or explicit indices)."""
        eff = self.effective(1.0)
        return [
            Intervention(
                "add", name, {"direction": eff[i]}, float(scale), rows=rows, positions=positions
            )
            for i, name in enumerate(self.hook_names())
        ]

    @contextmanager
    def apply(
        self,
        model: Any,
        scale: float = 1.0,
        positions: Positions = None,
        *,
        model_id: str | None = None,
    ) -> Iterator[Any]:
        """Steer `model` for the duration of a `with` block (also inside
        `interp.generation.generate`, whose positions stay right with a KV cache)."""
        self.check_model(model, model_id)
        with intervene(model, self.interventions(scale, positions)):
            yield model

    def sweep(self, model: Any, scales: Sequence[float], **kwargs: Any) -> Any:
        """`interp.steering.evaluate.sweep(model, self, scales, ...)`: a table and a figure."""
        from interp.steering.evaluate import sweep

        return sweep(model, self, scales, **kwargs)

    # --- constructors --------------------------------------------------------------------------

    @classmethod
    def from_pairs(cls, model: Any, pairs: Any, layers: Sequence[int], **kwargs: Any):
        """`interp.steering.extraction.extract(model, pairs, layers, ...)`."""
        from interp.steering.extraction import extract

        return extract(model, pairs, layers, **kwargs)

    @classmethod
    def from_concept(cls, model: Any, concept: str, layers: Sequence[int], **kwargs: Any):
        """A built-in concept set of the default model (`interp.steering.concepts`)."""
        from interp.steering.concepts import concept_pairs
        from interp.steering.extraction import extract

        return extract(model, concept_pairs(concept), layers, concept=concept, **kwargs)

    @classmethod
    def from_sae(cls, folder: str | Path, feature: int, **kwargs: Any):
        """An SAE latent's decoder direction (`interp.steering.extraction.from_sae`)."""
        from interp.steering.extraction import from_sae

        return from_sae(folder, feature, **kwargs)

    @classmethod
    def from_gguf(cls, path: str | Path, **kwargs: Any):
        """A llama.cpp / repeng control-vector GGUF (`interp.steering.gguf.read_gguf`)."""
        from interp.steering.gguf import read_gguf

        return read_gguf(path, **kwargs)

    @classmethod
    def load(cls, path: str | Path) -> "SteeringVector":
        return load_vector(path)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        return save_vector(path, self, overwrite)

    # --- equality and metadata -----------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Everything but the directions, as JSON-able values (plus `raw_norms`)."""
        meta = {k: v for k, v in asdict(self).items() if k != "directions"}
        meta["layers"] = list(self.layers)
        meta["resid_norms"] = list(self.resid_norms)
        meta["raw_norms"] = list(self.raw_norms)
        return meta

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SteeringVector):
            return False
        return self.metadata() == other.metadata() and torch.equal(
            self.directions, other.directions
        )

    __hash__ = None  # type: ignore[assignment]


_FIELDS = (
    "layers",
    "model_id",
    "d_model",
    "n_layers",
    "site",
    "method",
    "convention",
    "resid_norms",
    "concept",
    "source_hash",
    "positions",
    "extra",
)


def save_vector(path: str | Path, vector: SteeringVector, overwrite: bool = False) -> Path:
    """Write `vector` as safetensors (atomically, never pickle): tensor `directions` and the
    JSON metadata under `interp.steering` in the header."""
    from safetensors.torch import save

    from sae.fsutil import write_bytes_atomically

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --force (overwrite=True) to replace it")
    meta = {"format": FORMAT, "interp.steering": json.dumps(vector.metadata())}
    write_bytes_atomically(path, save({"directions": vector.directions}, metadata=meta))
    return path


def load_vector(path: str | Path) -> SteeringVector:
    """The vector `save_vector` wrote. A file that is missing, not safetensors, or not a steering
    vector raises `SteeringError` saying what is wrong (nothing in it is executed)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise SteeringError(f"no steering vector at {path} (no such file)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = list(f.keys())  # noqa: SIM118 (safe_open has no iteration)
            tensor = f.get_tensor("directions") if names == ["directions"] else None
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise SteeringError(f"{path} is not a readable safetensors file ({err})") from None
    if meta.get("format") != FORMAT:
        raise SteeringError(
            f"{path} is not a steering vector (metadata format {meta.get('format')!r}, expected "
            f"{FORMAT!r}); for a llama.cpp/repeng GGUF use --format gguf / read_gguf"
        )
    if tensor is None:
        raise SteeringError(f"{path} must hold exactly one tensor 'directions', has {names}")
    try:
        data = json.loads(meta["interp.steering"])
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        kwargs = {k: data[k] for k in _FIELDS}
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise SteeringError(f"{path} has malformed steering metadata ({err!r})") from None
    if kwargs["extra"] is None or not isinstance(kwargs["extra"], dict):
        raise SteeringError(f"{path}: metadata 'extra' must be a JSON object")
    return SteeringVector(tensor, **kwargs)


# --- composition and directional ablation ----------------------------------------------------


@contextmanager
def steer(
    model: Any,
    vectors: Sequence[tuple[SteeringVector, float]],
    positions: Positions = None,
    *,
    model_id: str | None = None,
) -> Iterator[Any]:
    """Apply several vectors at once, each at its own scale (added in the given order; on a
    shared layer the additions sum)."""
    ivs: list[Intervention] = []
    for vector, scale in vectors:
        vector.check_model(model, model_id)
        ivs.extend(vector.interventions(scale, positions))
    with intervene(model, ivs):
        yield model


def project_out(direction: Float[Tensor, " d_model"], positions: Positions = None) -> HookFn:
    """Hook that removes the component along `direction`: x <- x - (x . u) u, u = direction/|d|."""
    unit = direction.detach().float() / direction.norm().clamp_min(1e-12)
    if not math.isfinite(float(direction.norm())) or float(direction.norm()) == 0:
        raise SteeringError("cannot ablate a zero or non-finite direction")

    def edit(x: Tensor) -> Tensor:
        u = unit.to(x.device, x.dtype)
        return x - (x @ u)[..., None] * u

    return replace_hook(edit, positions)


def ablation_hooks(
    model: Any, direction: Float[Tensor, " d_model"], positions: Positions = None
) -> list[tuple[str, HookFn]]:
    """Directional ablation at every layer: the direction is projected out of the residual
    stream before and after each attention and MLP (every block's `hook_resid_pre` and
    `hook_resid_mid`, and the last block's `hook_resid_post`), so no component can write it."""
    blocks = int(model.cfg.n_layers)
    if direction.shape != (int(model.cfg.d_model),):
        raise SteeringError(
            f"the ablated direction has shape {list(direction.shape)}; the model's residual "
            f"stream has width {int(model.cfg.d_model)}"
        )
    fn = project_out(direction, positions)
    names = [
        hook_name(layer, s) for layer in range(blocks) for s in ("hook_resid_pre", "hook_resid_mid")
    ]
    names.append(hook_name(blocks - 1, "hook_resid_post"))
    return [(name, fn) for name in names]


@contextmanager
def ablate(
    model: Any,
    direction: "Float[Tensor, ' d_model'] | SteeringVector",
    layer: int | None = None,
    positions: Positions = None,
) -> Iterator[Any]:
    """Remove a direction at every layer for the duration of a `with` block. A `SteeringVector`
    gives its direction at `layer` (default: its only layer, or the middle one of several)."""
    if isinstance(direction, SteeringVector):
        vector = direction
        vector.check_model(model)
        if layer is None:
            layer = vector.layers[len(vector.layers) // 2]
        direction = vector.select([layer]).directions[0]
    with intervene(model, ablation_hooks(model, direction, positions)):
        yield model
