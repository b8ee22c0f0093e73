"""The configs of `interp align ...` (import no torch).

`AlignOptions` is what every align command shares (model, vector, output folder, evaluation);
`BakeConfig` and `OrthogonalizeConfig` are the weight edits; the preference-training configs
(`interp.align.train_config`) subclass `AlignOptions` too.
"""

from dataclasses import dataclass

from interp.config import Float32ModelOptions


@dataclass(frozen=True)
class AlignOptions(Float32ModelOptions):
    """Options shared by every `interp align` command."""

    vector: str = ""
    """A steering vector (.safetensors from `interp steer extract`, or a llama.cpp/repeng .gguf)."""
    out: str = "aligned"
    """The model folder to write (HF format, with cfg.json, metrics.json and report.html)."""
    force: bool = False
    """Replace --out if it exists (it is never overwritten otherwise)."""
    suites: str = "organism,drift"
    """`interp eval` suites run on the new model and the original for metrics.json and
    report.html (comma list, e.g. organism,drift; 'none' or '' skips the evaluation)."""
    n: int = 100
    """Prompts per held-out evaluation set."""
    seed: int = 0
    """Seed for drawing the held-out evaluation prompts."""
    threads: int | None = None
    """CPU threads for torch (default: torch's own choice); 1 is fastest on a busy machine."""


@dataclass(frozen=True)
class BakeConfig(AlignOptions):
    """Options of `interp align bake`."""

    scale: float = 1.0
    """Multiplier of the vector (under its scale convention), as in `interp steer apply --scale`;
    the baked model equals the model steered at this scale at every position."""
    layers: str | None = None
    """Bake only these of the vector's layers: 13, 6-12 or 4,8,12-14 (default: all of them)."""


@dataclass(frozen=True)
class OrthogonalizeConfig(AlignOptions):
    """Options of `interp align orthogonalize`."""

    layer: str | None = None
    """The vector layer whose direction is removed (default, as `interp steer apply --ablate`:
    its only layer, or the middle one of several); several (2,3 or 2-3) remove the span of their
    directions. Removed from everything that writes to the residual stream, the model equals the
    ablation hooks with those directions."""
