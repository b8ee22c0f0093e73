"""What the `interp align` commands share at the command line: threads, messages, and the end
of every command that writes a model folder (`write_and_report`)."""

from typing import Any

from interp.align.config import AlignOptions
from interp.cli_common import ProgressBar, stdout


def say(text: str) -> None:
    stdout().print(text, highlight=False, soft_wrap=True, markup=False)


def set_threads(n: int | None) -> None:
    """torch's CPU threads from --threads (default: torch's own choice)."""
    if n is not None:
        import torch

        from interp.align.errors import AlignError

        if n < 1:
            raise AlignError(f"--threads must be at least 1, got {n}")
        torch.set_num_threads(n)


def write_and_report(
    cfg: AlignOptions,
    model: Any,
    tokenizer: Any,
    metrics: dict,
    *,
    extra_files: dict[str, bytes] | None = None,
) -> Any:
    """`write_aligned` with the command's options (evaluation progress on stderr), then the
    before/after table and what was written. Returns the `AlignReport`."""
    from interp.align.folder import write_aligned

    with ProgressBar("evaluating", unit="suites") as bar:
        report = write_aligned(
            cfg.out,
            model,
            tokenizer,
            cfg=cfg.to_dict(),
            metrics=metrics,
            baseline=cfg.model,
            suites=cfg.suites,
            n=cfg.n,
            seed=cfg.seed,
            force=cfg.force,
            extra_files=extra_files,
            on_suite=lambda done, total, name: bar.update(done, total, name),
        )
    if report.eval is not None:
        for note in report.eval.notes:
            say(f"note: {note}")
        stdout().print(report.table())
    files = ["cfg.json", "metrics.json", *(extra_files or {})]
    files += ["report.html"] if report.eval is not None else []
    say(f"wrote {report.path} (HF model folder, {', '.join(files)})")
    return report
