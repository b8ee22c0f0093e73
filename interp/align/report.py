"""The before/after evaluation of an aligned model, through `interp.evals` (the same rows,
intervals and figures as `interp eval --model aligned/ --baseline default`).

    report = evaluate_aligned("aligned/", "default", suite_list("organism,drift"))
    write_report("aligned/report.html", report, "interp align bake")
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.align.errors import AlignError
from interp.evals.run import EvalReport, evaluate_models, parse_suites


def suite_list(text: str | Sequence[str] | None) -> list[str]:
    """'organism,drift' -> ['organism', 'drift']; '' / 'none' / None -> [] (no evaluation).
    Every name is checked at once (`interp.evals.parse_suites`), so a typo fails before any
    model loads or trains."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = [p.strip() for p in parts if p.strip()]
    if names in ([], ["none"]):
        return []
    parse_suites(names)
    return names


def evaluate_aligned(
    folder: str | Path,
    baseline: str,
    suites: Sequence[str],
    *,
    n: int = 100,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float32",
    on_suite: Callable[[int, int, str], None] | None = None,
) -> EvalReport:
    """`interp.evals.evaluate_models(folder, baseline, suites)`: the saved model beside the one
    it was made from, reloaded from disk, so the figures are those of what was written."""
    if not suites:
        raise AlignError("no evaluation suites given; pass e.g. --suites organism,drift")
    return evaluate_models(
        str(folder),
        baseline,
        suites,
        seed=seed,
        n=n,
        device=device,
        dtype=dtype,
        on_suite=on_suite,
    )


def write_report(path: str | Path, report: EvalReport, title: str) -> Path:
    """The offline HTML report: `interp eval --baseline`'s figures (table, bars with 95% CIs)."""
    from interp.evals.figures import report_figures
    from interp.viz.html import write_html

    return write_html(path, report_figures(report), title)


def _cell(row: Any) -> str:
    if row is None:
        return ""
    e = row.estimate
    return f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"


@dataclass
class AlignReport:
    """What `write_aligned` wrote: the folder, and (when suites were run) the evaluation of the
    aligned model (`after`) beside the model it was made from (`before`)."""

    path: Path
    eval: EvalReport | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def after(self) -> list:
        return [] if self.eval is None else self.eval.rows

    @property
    def before(self) -> list:
        return [] if self.eval is None else self.eval.baseline_rows

    def rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(suite, row, before [95% CI], after [95% CI], change, intervals overlap) per row."""
        if self.eval is None:
            return []
        return [
            (
                c.suite,
                c.name,
                _cell(c.baseline),
                _cell(c.model),
                "" if c.diff is None else f"{c.diff:+.3f}",
                "" if c.overlap is None else ("yes" if c.overlap else "no"),
            )
            for c in self.eval.comparisons
        ]

    def table(self) -> Any:
        """The before/after rows as a `rich.table.Table` (for the CLI to print)."""
        from rich.table import Table

        base = self.eval.baseline if self.eval is not None else "before"
        table = Table(title=f"{self.path}: before ({base}) and after, held-out prompts (95% CI)")
        for col in ("suite", "row", "before", "after", "change", "overlap"):
            table.add_column(col, justify="right" if col == "change" else "left")
        for row in self.rows():
            table.add_row(*row)
        return table
