"""`interp patch`: activation patching, attribution patching, IG, ablation and edge circuits.

    interp patch --clean "When Mary and John went to the store, John gave a drink to" \
        --corrupt "When Mary and John went to the store, Mary gave a drink to" \
        --answer " Mary" --wrong " John" --grid heads
    interp patch --task induction --grid heads --ablate mean

The options are the fields of `interp.patching.config.PatchConfig`.
"""

import typer
from rich.table import Table

from interp.cli_common import ProgressBar, config_command, derived_epilog, stdout
from interp.patching.config import PatchConfig


def _table(run, k: int) -> Table:
    res = run.result
    table = Table(title=f"top {k} by |change| ({res.method})")
    table.add_column("cell")
    table.add_column(f"change in {res.metric}", justify="right")
    for label, value in run.top(k):
        table.add_row(label, f"{value:+.4f}")
    return table


def run(cfg: PatchConfig) -> None:
    """Find which layers, heads, positions or edges carry a behaviour (writes JSON and HTML)."""
    from interp.patching.run import output_folder, patch_run, write_run

    out = output_folder(cfg)
    if out.exists() and not cfg.force:  # before the model loads
        raise FileExistsError(17, "the output folder exists; pass --force to replace it", str(out))
    with ProgressBar("patching", unit="patches") as bar:
        result = patch_run(cfg, on_progress=lambda done, total: bar.update(done, total))
    folder = write_run(result, cfg)
    console = stdout()
    res = result.result
    console.print(result.description, highlight=False, soft_wrap=True)
    console.print(
        f"{res.metric}: clean {res.clean:.4f}, corrupt {res.corrupt:.4f}", highlight=False
    )
    console.print(_table(result, cfg.top))
    console.print(f"wrote {folder}/result.json, report.html", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this capability's command(s) to the root `interp` app."""
    app.command("patch", epilog=derived_epilog(PatchConfig))(config_command(PatchConfig, run))
