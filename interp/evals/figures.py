"""Plotly figures of an evaluation: the table, and bar charts with 95% error bars (the model
beside its baseline when there is one)."""

from collections.abc import Sequence

import plotly.graph_objects as go

from interp.evals.run import EvalReport
from interp.evals.suites import Row
from interp.viz.colors import series_color

BOUNDED = ("rate", "top-1", "probability", "TV")
"""Units whose values lie in [0, 1]; the others (nats/token) get a chart of their own."""


def _cell(row: Row | None) -> str:
    if row is None:
        return ""
    e = row.estimate
    return f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}] n={e.n}"


def table_figure(report: EvalReport) -> go.Figure:
    """The report's table: one line per row (with a baseline: both, the difference, overlap)."""
    if report.baseline is None:
        head = ["suite", "row", "value [95% CI] n", "target", "pass", "note"]
        cols = (
            list(
                zip(
                    *[
                        (
                            r.suite,
                            r.name,
                            _cell(r),
                            r.target or "",
                            "" if r.passed is None else ("yes" if r.passed else "no"),
                            r.note,
                        )
                        for r in report.rows
                    ],
                    strict=True,
                )
            )
            if report.rows
            else [[] for _ in head]
        )
    else:
        head = ["suite", "row", report.model, report.baseline, "diff", "intervals overlap"]
        cols = (
            list(
                zip(
                    *[
                        (
                            c.suite,
                            c.name,
                            _cell(c.model),
                            _cell(c.baseline),
                            "" if c.diff is None else f"{c.diff:+.3f}",
                            "" if c.overlap is None else ("yes" if c.overlap else "no"),
                        )
                        for c in report.comparisons
                    ],
                    strict=True,
                )
            )
            if report.comparisons
            else [[] for _ in head]
        )
    fig = go.Figure(go.Table(header={"values": head}, cells={"values": cols, "align": "left"}))
    fig.update_layout(title=f"Evaluation of {report.model}", height=120 + 28 * len(report.rows))
    return fig


def _bars(series: Sequence[tuple[str, Sequence[Row]]], title: str, unit: str) -> go.Figure:
    fig = go.Figure()
    for i, (label, rows) in enumerate(series):
        fig.add_bar(
            name=label,
            y=[f"{r.suite}: {r.name}" for r in rows],
            x=[r.value for r in rows],
            orientation="h",
            marker_color=series_color(i),
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [r.estimate.high - r.value for r in rows],
                "arrayminus": [r.value - r.estimate.low for r in rows],
            },
        )
    n = max((len(rows) for _, rows in series), default=0)
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title=unit,
        yaxis={"autorange": "reversed"},
        height=160 + 26 * n * len(series),
    )
    return fig


def bar_figures(report: EvalReport) -> list[go.Figure]:
    """Bar charts with 95% error bars: one of the rows in [0, 1], one of the per-token rows."""
    figs = []
    for bounded in (True, False):

        def keep(r: Row, bounded: bool = bounded) -> bool:
            return (r.unit in BOUNDED) == bounded

        series = [(report.model, [r for r in report.rows if keep(r)])]
        if report.baseline is not None:
            names = {(r.suite, r.name) for r in series[0][1]}
            base = [r for r in report.baseline_rows if keep(r) and (r.suite, r.name) in names]
            series.append((report.baseline, base))
        if series[0][1]:
            title = "rates and shares (95% CI)" if bounded else "per-token figures (95% CI)"
            figs.append(_bars(series, title, "value" if bounded else "nats/token"))
    return figs


def report_figures(report: EvalReport) -> list[go.Figure]:
    """The HTML report's figures: the table, then the bar charts."""
    return [table_figure(report), *bar_figures(report)]
