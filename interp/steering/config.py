"""The configs of `interp steer extract|apply|eval|export` (import no torch)."""

from dataclasses import dataclass
from typing import Literal

from interp.config import Float32ModelOptions, JSONConfig
from interp.errors import InterpError


def parse_layers(text: str) -> list[int]:
    """'13' -> [13], '6-12' -> [6, ..., 12], '4,8,12-14' -> [4, 8, 12, 13, 14]."""
    out: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise InterpError(
            f"--layers {text!r} is not a layer list; write e.g. 13, 6-12 or 4,8,12-14"
        ) from None
    if not out:
        raise InterpError("--layers is empty; write e.g. 13, 6-12 or 4,8,12-14")
    return out


def parse_scales(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InterpError(f"--scales {text!r} is not a comma list of numbers") from None


@dataclass(frozen=True)
class ExtractConfig(Float32ModelOptions):
    """Options of `interp steer extract`."""

    concept: Literal["refusal", "sentiment", "gender", "jailbreak"] | None = None
    """A built-in concept set of the default model (training split)."""
    pairs: str | None = None
    """A jsonl file of contrastive pairs: one {"positive": text, "negative": text} per line."""
    from_sae: str | None = None
    """An SAE folder (SAELens format): use a latent's decoder direction (with --feature)."""
    feature: int | None = None
    """The SAE latent whose decoder direction is the vector (with --from-sae)."""
    layers: str = "13"
    """Blocks to read (and later steer) at: 13, 6-12 or 4,8,12-14."""
    method: Literal["mean-diff", "pca", "probe"] = "mean-diff"
    """Difference in means (CAA), PCA of paired differences (repeng), or a logistic probe."""
    positions: Literal["last", "mean"] = "last"
    """Read each text's last token, or the mean over its tokens (BOS excluded)."""
    convention: Literal["relative", "absolute"] = "relative"
    """Scale convention: 'relative' (scale 1 adds the mean residual norm along the unit
    direction) or 'absolute' (scale 1 adds the direction as extracted)."""
    n: int = 128
    """Number of pairs drawn from a built-in concept set."""
    seed: int = 0
    """Seed for drawing a built-in concept set."""
    out: str = "steering.safetensors"
    """Where to write the vector (safetensors)."""
    force: bool = False
    """Overwrite --out if it exists."""


@dataclass(frozen=True)
class ApplyConfig(Float32ModelOptions):
    """Options of `interp steer apply`."""

    vector: str = ""
    """A steering vector (.safetensors from extract, or a llama.cpp/repeng .gguf)."""
    prompt: str = ""
    """The prompt to continue."""
    scale: float = 1.0
    """Multiplier of the vector (under its scale convention)."""
    layers: str | None = None
    """Steer only these of the vector's layers (default: all of them)."""
    positions: Literal["all", "prompt", "generated"] = "all"
    """Token positions to steer."""
    ablate: bool = False
    """Project the vector's direction out at every layer instead of adding it."""
    max_new_tokens: int = 20
    """Tokens to generate (greedy, KV cache)."""


@dataclass(frozen=True)
class EvalConfig(Float32ModelOptions):
    """Options of `interp steer eval`."""

    vector: str = ""
    """A steering vector (.safetensors or .gguf)."""
    concept: Literal["refusal", "sentiment", "gender", "jailbreak"] | None = None
    """Which built-in held-out evaluation to run (default: the vector's concept)."""
    scales: str = "0,0.25,0.5,1,2"
    """Comma list of scales to sweep (0 is always added)."""
    layers: str | None = None
    """Steer only these of the vector's layers (default: all of them)."""
    positions: Literal["all", "prompt", "generated"] = "all"
    """Token positions to steer."""
    ablate: bool = False
    """Also measure directional ablation (refusal of held-out harmful requests)."""
    n: int = 50
    """Held-out prompts per scale."""
    seed: int = 0
    """Seed for drawing the held-out prompts."""
    out: str | None = None
    """Write the figure (offline HTML) here."""
    json: str | None = None
    """Write the table as JSON here."""
    force: bool = False
    """Overwrite --out / --json if they exist."""


@dataclass(frozen=True)
class ExportConfig(JSONConfig):
    """Options of `interp steer export`."""

    vector: str = ""
    """The steering vector to export (.safetensors, or a .gguf to convert back)."""
    format: Literal["gguf", "safetensors"] = "gguf"
    """gguf: a llama.cpp control vector (direction.N = blocks.N.hook_resid_post, N >= 1);
    safetensors: our own format."""
    scale: float = 1.0
    """Bake this scale into the exported directions (llama.cpp's strength multiplies it)."""
    layers: str | None = None
    """Export only these of the vector's layers."""
    model_hint: str | None = None
    """controlvector.model_hint (default: the model's HF model_type, e.g. llama)."""
    out: str = "steering.gguf"
    """Where to write the file."""
    force: bool = False
    """Overwrite --out if it exists."""
