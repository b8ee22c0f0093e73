"""The config of `interp dashboard` (imports no torch)."""

from dataclasses import dataclass

from interp.config import ModelOptions
from interp.errors import InterpError


class DashboardError(InterpError):
    """Bad input to the dashboard: not an SAE, an SAE that does not fit the model, a feature
    index out of range, an output folder that exists."""


@dataclass(frozen=True)
class DashboardConfig(ModelOptions):
    """Options of `interp dashboard`, saved as `config.json` in the output folder."""

    sae: str = ""
    """SAE folder (SAELens layout: cfg.json + sae_weights.safetensors), e.g. one that
    `interp train-sae` wrote under <run>/saes/<hook>, or a train-sae run folder with one SAE."""
    hook: str | None = None
    """Hook the SAE reads; default: the hook_name in the SAE's cfg.json."""
    model: str | None = None
    """Model; default: the model_name in the SAE's cfg.json, else 'default' (the embedded
    model)."""
    features: str | None = None
    """Latents to show, e.g. '0-99' or '3,17,40-45'; default: all of them."""
    top: int | None = None
    """Show only the N latents that fire most often (after the pass)."""
    all: bool = False
    """Show every latent (the default when neither --features nor --top is given)."""
    tokens: int = 1_000_000
    """Tokens run through the model for the statistics (BOS positions not counted)."""
    label_tokens: int = 32_768
    """Held-out tokens, after the statistics' ones, on which label rules are scored."""
    dataset: str = "default"
    """'default' (the embedded corpus), a local .txt/.jsonl/.parquet file, or a hub dataset."""
    split: str = "train"
    """Split of the embedded corpus (train/heldout) or of a hub dataset."""
    text_field: str = "text"
    """Field (.jsonl, hub) or column (.parquet) holding the text."""
    seed: int = 1
    """Seed of the embedded corpus's stream and of the quantile sample."""
    ctx_len: int = 128
    """Tokens per context, BOS included."""
    batch_size: int = 64
    """Contexts per forward pass."""
    top_k: int = 20
    """Top-activating examples kept per latent."""
    sample: int = 64
    """Firings sampled uniformly per latent, from which the quantile examples are drawn (exact
    quantiles for latents that fire at most this often)."""
    quantiles: int = 5
    """Quantile groups of the non-zero activations shown per latent."""
    per_quantile: int = 3
    """Examples shown per quantile group."""
    left: int = 16
    """Context tokens shown before an example's token."""
    right: int = 6
    """Context tokens shown after an example's token."""
    out: str = "dashboard"
    """Output folder: index.html, features/<N>.json, neuronpedia/, summary.json."""
    force: bool = False
    """Replace --out if it exists."""
    neuronpedia_batch: int = 128
    """Features per Neuronpedia batch file."""

    def __post_init__(self) -> None:
        for name in ("tokens", "label_tokens", "ctx_len", "batch_size", "top_k", "sample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DashboardError(
                    f"--{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        for name in ("quantiles", "per_quantile", "neuronpedia_batch"):
            if getattr(self, name) < 1:
                raise DashboardError(f"--{name.replace('_', '-')} must be >= 1")
        if self.left < 1 or self.right < 1:
            raise DashboardError(
                "--left and --right must be >= 1 (the labels read the tokens around)"
            )
        if self.ctx_len < 2:
            raise DashboardError(f"--ctx-len must be at least 2, got {self.ctx_len}")
        if self.top is not None and self.top < 1:
            raise DashboardError(f"--top must be a positive integer, got {self.top}")
        if sum((self.top is not None, self.features is not None, self.all)) > 1:
            raise DashboardError("give one of --features, --top and --all")
        if self.features is not None:
            parse_features(self.features, None)


def parse_features(spec: str, d_sae: int | None) -> list[int]:
    """'0-99,120' -> [0, ..., 99, 120], in order, without repeats; checked against d_sae."""
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise DashboardError(
                f"--features {spec!r}: {part!r} is not an index or a range like 0-99"
            ) from None
        if a < 0 or b < a:
            raise DashboardError(f"--features {spec!r}: {part!r} is not a valid range")
        if d_sae is not None and b >= d_sae:
            raise DashboardError(
                f"feature {b} is out of range: the SAE has {d_sae} latents (0-{d_sae - 1})"
            )
        out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))
