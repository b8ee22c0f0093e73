"""The config of `interp explain` (imports no torch)."""

from dataclasses import dataclass
from typing import Literal

from interp.config import Float32ModelOptions
from interp.explain.errors import ExplainError

METHOD_CHOICES = ("shap", "lime", "attention", "gradient", "all")


@dataclass(frozen=True)
class ExplainConfig(Float32ModelOptions):
    """Options of `interp explain`."""

    text: str = ""
    """The text whose next token is explained (tokenised once, BOS prepended)."""
    target: str = ""
    """The next token explained, exactly one token (mind the leading space: ' Mary')."""
    contrast: str | None = None
    """A second token: the score is then logit(target) - logit(contrast)."""
    kind: Literal["logprob", "logit"] = "logprob"
    """Without --contrast: explain log p(target) ('logprob') or its logit ('logit')."""
    method: tuple[str, ...] = ("all",)
    """shap, lime, attention, gradient (gradient x input and integrated gradients) or all;
    repeatable."""
    baseline: str = "pad"
    """What a masked token becomes: 'pad' (the pad token), 'remove' (dropped), or a token id."""
    shap_method: Literal["partition", "permutation"] = "partition"
    """shap's explainer: Partition (Owen values on a tree of neighbouring tokens) or
    Permutation (sampled Shapley values)."""
    max_evals: int = 500
    """Most model evaluations SHAP may use (shap's own default)."""
    num_samples: int = 1000
    """LIME's perturbed samples (LIME's default is 5,000; 1,000 ranks tokens like 5,000 with
    Spearman 0.85-0.97 on 14-16-token prompts, at a fifth of the cost)."""
    ig_steps: int = 32
    """Integrated gradients' quadrature points (Gauss-Legendre)."""
    batch_size: int = 128
    """Rows per forward pass of the masked-model function (128 is fastest on the CPU; larger
    on a GPU)."""
    seed: int = 0
    """Seed of LIME's and the Permutation explainer's sampling."""
    top: int = 5
    """How many top tokens to print per method."""
    out: str = "explain_out"
    """Folder for explanation.html and explanation.json."""
    force: bool = False
    """Overwrite existing files in --out."""

    def __post_init__(self) -> None:
        bad = [m for m in self.method if m not in METHOD_CHOICES]
        if bad or not self.method:
            raise ExplainError(
                f"unknown --method {bad or '(none)'}; valid: {', '.join(METHOD_CHOICES)}"
            )
        if self.baseline not in ("pad", "remove") and not self.baseline.isdigit():
            raise ExplainError(f"--baseline {self.baseline!r} is not 'pad', 'remove' or a token id")
        for name in ("max_evals", "num_samples", "ig_steps", "batch_size", "top"):
            if getattr(self, name) < 1:
                raise ExplainError(f"--{name.replace('_', '-')} must be at least 1")
