"""The configs of `interp eval` and `interp eval monitor train|score` (import no torch)."""

from dataclasses import dataclass
from typing import Literal

from interp.config import Float32ModelOptions


@dataclass(frozen=True)
class EvalConfig(Float32ModelOptions):
    """Options of `interp eval`."""

    baseline: str | None = None
    """A second model, shown side by side with the difference and whether the 95% intervals
    overlap; it adds the KL to the baseline on neutral text. With another tokenizer it is
    compared on text only (per-token rows left out)."""
    suite: tuple[str, ...] = ()
    """Suites to run: induction, names, refusal, over-refusal, jailbreak, sentiment, bias,
    drift; 'organism' (docs/organism.md's table), 'all' (the default), or a .jsonl suite file."""
    n: int = 100
    """Prompts per held-out set (name stories: twice this)."""
    seed: int = 0
    """Seed for drawing the held-out prompts."""
    json: str | None = None
    """Also write the table as JSON to this file."""
    html: str | None = None
    """Also write an offline HTML report (the table and bar charts with error bars)."""
    force: bool = False
    """Overwrite --json / --html files that exist."""
    threads: int | None = None
    """CPU threads for torch (default: torch's own choice); 1 is fastest on a busy machine."""


@dataclass(frozen=True)
class MonitorTrainConfig(Float32ModelOptions):
    """Options of `interp eval monitor train`."""

    out: str = "monitor.safetensors"
    """The monitor file to write (safetensors with JSON metadata)."""
    layer: int = 12
    """The block whose residual stream (blocks.L.hook_resid_post) the probe reads."""
    sae: str | None = None
    """An SAE folder (SAELens format): the probe reads its latents of the SAE's hook instead of
    the residual stream (--layer is then unused)."""
    pool: Literal["mean", "last"] = "last"
    """Pool the prompt's positions (BOS left out) by their mean, or take the last token."""
    data: str | None = None
    """A jsonl file of {"prompt": text, "label": 0|1} lines to train on (1 = flag); default: the
    default model's training-split harmful, benign and jailbreak chat prompts."""
    fpr: float = 0.01
    """The threshold is set so that this share of the benign training prompts is flagged."""
    l2: float = 1e-3
    """L2 penalty of the logistic regression (on standardised features)."""
    seed: int = 0
    """Seed for drawing the training prompts."""
    force: bool = False
    """Overwrite --out if it exists."""
    threads: int | None = None
    """CPU threads for torch (default: torch's own choice)."""


@dataclass(frozen=True)
class MonitorScoreConfig(Float32ModelOptions):
    """Options of `interp eval monitor score`."""

    monitor: str = "monitor.safetensors"
    """A monitor file written by `interp eval monitor train`."""
    prompt: str | None = None
    """One prompt to screen; with neither --prompt nor --data, the held-out evaluation: ROC AUC
    and TPR at 1% FPR of the probe and of the keyword screen."""
    data: str | None = None
    """A jsonl file of {"prompt": text} lines (with "label": 0|1, also AUC and TPR)."""
    model: str | None = None
    """The model to read activations from; default: the model the monitor was trained on."""
    json: str | None = None
    """Also write the scores as JSON to this file."""
    force: bool = False
    """Overwrite --json if it exists."""
    threads: int | None = None
    """CPU threads for torch (default: torch's own choice)."""
