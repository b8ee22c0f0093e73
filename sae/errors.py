"""The SAE package's user-error types: bad input the caller can fix.

`SAEError` is a `ValueError`, so callers that catch `ValueError` keep working; a command-line
front end catches `SAEError` to print one line instead of a traceback. Any other exception is a bug.
Training stops (NaN loss, divergence) are `SAEError`s too, raised by `sae.training`.
"""

from pathlib import Path


class SAEError(ValueError):
    """Bad input to the SAE package; the message is meant for the user."""


class ConfigError(SAEError):
    """An `SAEConfig` or `TrainConfig` value out of range, or an unknown field."""


class FileFormatError(SAEError):
    """A file of an SAE folder is malformed, truncated, or disagrees with another file there.
    The message starts with the file's path and names the field or tensor at fault."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable, e.g. across worker processes
        return type(self), (self.path, self.problem)


class CheckpointError(SAEError):
    """No checkpoint of a run can be used to resume it (each one is named with its problem)."""


class CheckpointWarning(UserWarning):
    """A checkpoint was passed over: it failed verification on resume (an older one is used),
    or it was not written because the weights had diverged."""


class NonFiniteLossError(SAEError, RuntimeError):
    """The loss became NaN or inf; no optimiser step was taken with it."""

    def __init__(self, step: int, name: str, values: dict[str, float], checkpoint: Path | None):
        self.step, self.name, self.values, self.checkpoint = step, name, values, checkpoint
        terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint exists"
        super().__init__(
            f"non-finite loss at step {step} for SAE {name!r} ({terms}); training stopped "
            f"before updating the weights; {kept}. Lower the lr or check the activations."
        )


class DivergenceError(SAEError, RuntimeError):
    """The reconstruction error exploded (`sae.training.DIVERGENCE_RATIO`); the step that
    found it did not update the weights, and no checkpoint holds diverged weights."""

    def __init__(
        self, step: int, name: str, ratio: float, ev: float, checkpoint: Path | None, why: str
    ):
        self.step, self.name, self.ratio, self.checkpoint = step, name, ratio, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint exists"
        super().__init__(
            f"training diverged at step {step} for SAE {name!r}: the squared reconstruction "
            f"error is {ratio:.3g} times the inputs' squared norm (explained variance {ev:.3g}) "
            f"{why}; {kept}. Resume from it with a lower lr (resume(run_dir, batches, lr=...))."
        )
