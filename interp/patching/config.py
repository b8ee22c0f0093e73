"""The config of `interp patch`, saved as the run's `cfg.json` (imports no torch)."""

from dataclasses import dataclass
from typing import Literal

from interp.config import Float32ModelOptions
from interp.errors import InterpError


@dataclass(frozen=True)
class PatchConfig(Float32ModelOptions):
    """Options of `interp patch`."""

    clean: str | None = None
    """The clean prompt (the behaviour happens); BOS is prepended."""
    corrupt: str | None = None
    """The corrupt prompt, of the same token length as --clean (the behaviour does not)."""
    answer: str | None = None
    """The clean run's answer, one token with its leading space (e.g. ' Mary')."""
    wrong: str | None = None
    """The competing answer for --metric logit_diff (e.g. ' John')."""
    task: Literal["names", "induction", "refusal"] | None = None
    """Prompt pairs and metric from the default model's held-out sets, instead of --clean/--corrupt."""
    pairs: int = 8
    """Prompt pairs drawn for --task."""
    seed: int = 0
    """Seed for drawing --task pairs."""
    grid: Literal["resid", "attn", "heads", "mlp", "edges"] = "resid"
    """What to patch: resid_pre, attention output, per-head output (z), MLP output, or the
    edges between heads and MLPs."""
    method: Literal["exact", "attribution", "ig"] = "exact"
    """exact (one patched run per cell, folded into batches), attribution (gradient x
    difference: 2 forward and 1 backward pass), or ig (integrated gradients, --steps runs)."""
    steps: int = 16
    """Interpolation steps of --method ig."""
    positions: Literal["auto", "each", "all"] = "auto"
    """Cells per position ('each') or patching every position at once ('all'); 'auto': each
    for resid, attn and mlp, all for heads."""
    metric: Literal["logit_diff", "prob", "kl"] = "logit_diff"
    """With --clean/--corrupt: logit(answer) - logit(wrong), P(answer), or KL to the clean run at
    the last position. A --task brings its own metric."""
    ablate: Literal["none", "zero", "mean", "resample"] = "none"
    """Instead of patching, ablate each cell of the clean run: to zero, to its mean over the
    corrupt prompts, or to the corrupt run's activation (resample)."""
    align: Literal["error", "left"] = "error"
    """Clean and corrupt prompts of different token lengths: stop with an error, or pad the
    shorter one at the front ('left')."""
    memory_mb: float = 1024.0
    """Memory budget of one folded forward pass, in MiB; larger grids run in more chunks."""
    circuit: int = 20
    """Edges drawn in the circuit graph (--grid edges)."""
    top: int = 10
    """Entries printed."""
    out: str | None = None
    """Output folder (result.json, cfg.json, report.html); default runs/patch-<task or grid>-<method>."""
    force: bool = False
    """Replace an existing output folder."""

    def __post_init__(self) -> None:
        if self.pairs < 1:
            raise InterpError(f"pairs must be >= 1, got {self.pairs}")
        if self.steps < 1:
            raise InterpError(f"steps must be >= 1, got {self.steps}")
        if self.memory_mb <= 0:
            raise InterpError(f"memory_mb must be > 0, got {self.memory_mb}")
