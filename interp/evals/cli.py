"""`interp eval`: safety evaluations with 95% intervals; `interp eval monitor train|score`:
activation monitors. Also `interp organism eval`, the default model's table, from the same code.

    interp eval                                   # every built-in suite on the default model
    interp eval --model aligned/ --baseline default --suite refusal,jailbreak,bias --html r.html
    interp eval --suite my_prompts.jsonl --json out.json
    interp eval monitor train --layer 8 --out monitor.safetensors
    interp eval monitor score --monitor monitor.safetensors --prompt "User: ...\\nAssistant:"

Options are the fields of the configs in `interp.evals.config`.
"""

import math
from pathlib import Path

import typer
from rich.table import Table

from interp.cli_common import ProgressBar, config_command, stdout
from interp.evals.config import EvalConfig, MonitorScoreConfig, MonitorTrainConfig
from interp.organism.config import OrganismEvalConfig

app = typer.Typer(
    help="Safety evaluations with 95% confidence intervals; activation monitors. With no "
    "subcommand, evaluates --model on the suites.",
    invoke_without_command=True,
)
monitor_app = typer.Typer(
    help="Linear probes on the residual stream that flag harmful prompts and jailbreaks.",
    no_args_is_help=True,
)


def _say(text: str) -> None:
    stdout().print(text, highlight=False, soft_wrap=True, markup=False)


def _refuse_overwrite(paths: list[str | None], force: bool) -> None:
    for path in paths:
        if path is not None and Path(path).exists() and not force:
            raise FileExistsError(f"{path} already exists; pass --force to replace it")


def _threads(n: int | None) -> None:
    if n is not None:
        import torch

        if n < 1:
            from interp.errors import InterpError

            raise InterpError(f"--threads must be at least 1, got {n}")
        torch.set_num_threads(n)


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "" if x is None or math.isnan(x) else format(x, fmt)


def _ci(row) -> str:
    e = row.estimate
    return f"[{_num(e.low)}, {_num(e.high)}]"


def _mark(passed: bool | None) -> str:
    return "" if passed is None else "[green]yes[/]" if passed else "[red]no[/]"


def rows_table(title: str, rows, first: str = "suite") -> Table:
    """One line per row: value, 95% interval, n, and the target where the row has one."""
    table = Table(title=title)
    cols = (first, "row", "value", "95% CI", "n", "target", "pass", "note")
    if first == "behaviour":
        cols = ("behaviour", *cols[2:])
    for col in cols:
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for r in rows:
        cells = [
            r.name,
            _num(r.value),
            _ci(r),
            str(r.estimate.n),
            r.target or "",
            _mark(r.passed),
            r.note,
        ]
        table.add_row(*(cells if first == "behaviour" else [r.suite, *cells]))
    return table


def comparison_table(report) -> Table:
    """The model beside the baseline: values with intervals, difference, interval overlap."""
    table = Table(title=f"{report.model} against {report.baseline} (95% CI)")
    for col in ("suite", "row", report.model, report.baseline, "diff", "overlap"):
        table.add_column(col, justify="right" if col == "diff" else "left")
    for c in report.comparisons:
        base = "" if c.baseline is None else f"{_num(c.baseline.value)} {_ci(c.baseline)}"
        overlap = "" if c.overlap is None else "yes" if c.overlap else "[yellow]no[/]"
        model = f"{_num(c.model.value)} {_ci(c.model)}"
        table.add_row(c.suite, c.name, model, base, _num(c.diff, "+.3f"), overlap)
    return table


def _write(report, json_path: str | None, html_path: str | None) -> None:
    from sae.fsutil import dump_json

    if json_path is not None:
        dump_json(Path(json_path), report.to_dict())
        _say(f"wrote {json_path}")
    if html_path is not None:
        from interp.evals.figures import report_figures
        from interp.viz.html import write_html

        write_html(html_path, report_figures(report), f"interp eval: {report.model}")
        _say(f"wrote {html_path}")


def _evaluate(model, baseline, suites, seed, n, device, dtype):
    from interp.evals.run import evaluate_models

    with ProgressBar("evaluating", unit="suites") as bar:
        return evaluate_models(
            model,
            baseline,
            suites,
            seed=seed,
            n=n,
            device=device,
            dtype=dtype,
            on_suite=lambda done, total, name: bar.update(done, total, name),
        )


def run(cfg: EvalConfig) -> None:
    """Evaluate a model on safety suites (95% intervals), optionally beside a baseline."""
    from interp.evals.run import parse_suites

    _refuse_overwrite([cfg.json, cfg.html], cfg.force)
    _threads(cfg.threads)
    parse_suites(cfg.suite)  # an unknown suite fails before any model loads
    report = _evaluate(cfg.model, cfg.baseline, cfg.suite, cfg.seed, cfg.n, cfg.device, cfg.dtype)
    out = stdout()
    for note in report.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if report.baseline is None:
        out.print(rows_table(f"Evaluation of {cfg.model} (held-out prompts)", report.rows))
    else:
        out.print(comparison_table(report))
    _write(report, cfg.json, cfg.html)


def organism_run(cfg: OrganismEvalConfig) -> None:
    """Print the planted-behaviour table (held-out prompts) of a model: `interp eval`'s
    'organism' suites, the rows with a target."""
    from interp.evals.run import organism_rows

    _refuse_overwrite([cfg.json], cfg.force)
    _threads(cfg.threads)
    report = _evaluate(cfg.model, None, ("organism",), cfg.seed, 100, cfg.device, cfg.dtype)
    report.rows = organism_rows(report.rows)
    title = f"Planted behaviours of {cfg.model} (held-out prompts)"
    stdout().print(rows_table(title, report.rows, first="behaviour"))
    _write(report, cfg.json, None)


def monitor_train(cfg: MonitorTrainConfig) -> None:
    """Train a linear probe on a layer's residual stream to flag harmful prompts and jailbreaks."""
    from interp.evals.monitor import train_from_config

    _refuse_overwrite([cfg.out], cfg.force)
    _threads(cfg.threads)
    result = train_from_config(cfg)
    m = result.monitor
    where = (
        f"{m.info['n_calibration']} prompts of templates kept out of the fit"
        if m.info["n_calibration"]
        else "the training prompts"
    )
    _say(
        f"fit on {m.info['n_fit']} prompts at {m.hook} ({m.pool} token): training AUC "
        f"{result.train_auc:.3f}; threshold {m.threshold:.3f}, flagging {cfg.fpr:.0%} of the "
        f"benign ones among {where}"
    )
    _say(f"wrote {cfg.out}")


def monitor_score(cfg: MonitorScoreConfig) -> None:
    """Screen prompts with a monitor, or measure it (and a keyword screen) on held-out prompts."""
    from interp.evals.monitor import score_from_config

    _refuse_overwrite([cfg.json], cfg.force)
    _threads(cfg.threads)
    result = score_from_config(cfg)
    out = stdout()
    if result.evaluation is not None:
        table = Table(title=f"Monitor {cfg.monitor} on held-out prompts")
        for col in (
            "prompts",
            "screen",
            "n (pos/neg)",
            "ROC AUC",
            "TPR at 1% FPR",
            "TPR at threshold",
            "FPR at threshold",
        ):
            table.add_column(col)
        for m in result.evaluation:
            table.add_row(
                m.task,
                m.screen,
                f"{m.n_pos}/{m.n_neg}",
                f"{m.auc:.3f}",
                _num(m.tpr_at_1pct),
                _num(m.tpr_at_threshold),
                _num(m.fpr_at_threshold),
            )
        out.print(table)
    if result.scores:
        table = Table(title=f"Monitor {cfg.monitor}")
        for col in ("score", "flagged", "prompt"):
            table.add_column(col)
        for s in result.scores:
            table.add_row(f"{s.score:.3f}", "[red]yes[/]" if s.flagged else "no", s.prompt)
        out.print(table)
    if cfg.json is not None:
        from sae.fsutil import dump_json

        dump_json(Path(cfg.json), result.to_dict())
        _say(f"wrote {cfg.json}")


_eval = config_command(EvalConfig, run)


def _callback(ctx: typer.Context, **values) -> None:
    if ctx.invoked_subcommand is None:
        _eval(ctx, **values)


_callback.__signature__ = _eval.__signature__  # type: ignore[attr-defined]
_callback.__doc__ = _eval.__doc__
app.callback()(_callback)
app.add_typer(monitor_app, name="monitor")
monitor_app.command("train")(config_command(MonitorTrainConfig, monitor_train))
monitor_app.command("score")(config_command(MonitorScoreConfig, monitor_score))


def register(root: typer.Typer) -> None:
    """Add `interp eval` to the root app, and `eval` to the `interp organism` app: the default
    model's table is the 'organism' suites of `interp eval`, one code path."""
    from interp.organism.cli import app as organism_app

    root.add_typer(app, name="eval")
    organism_app.command("eval")(config_command(OrganismEvalConfig, organism_run))
