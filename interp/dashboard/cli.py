"""`interp dashboard`: what each SAE latent means, in one pass, as offline HTML, per-feature JSON
and a Neuronpedia export.

    interp dashboard --sae runs/x/saes/blocks.12.hook_resid_post --tokens 1000000 --out dash/
    interp dashboard --sae DIR --features 0-99 --tokens 200000 --out dash/

The options are the fields of `interp.dashboard.config.DashboardConfig`.
"""

import typer
from rich.table import Table

from interp.cli_common import ProgressBar, config_command, derived_epilog, stdout
from interp.dashboard.config import DashboardConfig


def _summary(result) -> Table:
    s = result.summary
    table = Table(title=f"Dashboard {result.out}")
    table.add_column("")
    table.add_column("value", justify="right")
    q = s["label_score_quartiles"]
    rows = [
        ("features shown", f"{s['features_shown']:,}"),
        ("dead (never fired)", f"{s['dead']:,}"),
        ("dense (fires on > 10% of tokens)", f"{s['dense']:,}"),
        ("labelled", f"{s['labelled']:,}"),
        ("label score quartiles (held-out F1)", ", ".join(f"{x:.2f}" for x in q) or "n/a"),
        (
            "label score >= 0.5 / >= 0.8",
            f"{s['label_score_at_least_0.5']:,} / {s['label_score_at_least_0.8']:,}",
        ),
        ("tokens (statistics / held-out)", f"{s['n_tokens']:,} / {s['n_heldout_tokens']:,}"),
        ("pass", f"{s['pass_seconds']:.1f} s, {s['tokens_per_second']:,} tok/s"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def run(cfg: DashboardConfig) -> None:
    """Feature dashboards of an SAE: statistics in one pass, labels, offline HTML, JSON, Neuronpedia."""
    from interp.dashboard.output import dashboard_run

    with ProgressBar("dashboard") as bar:
        result = dashboard_run(cfg, on_progress=lambda done, total: bar.update(done, total))
    out = stdout()
    out.print(_summary(result))
    out.print(f"open {result.out / 'index.html'}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this capability's command(s) to the root `interp` app."""
    app.command("dashboard", epilog=derived_epilog(DashboardConfig))(
        config_command(DashboardConfig, run)
    )
