"""`interp organism ...`: commands about the embedded model organism.

The options of `eval` are the fields of `interp.organism.config.OrganismEvalConfig`.
"""

import json
from pathlib import Path

import typer
from rich.table import Table

from interp.cli_common import config_command, stdout
from interp.organism.config import OrganismEvalConfig

app = typer.Typer(
    help="The embedded model organism and its planted behaviours.", no_args_is_help=True
)


def _table(title: str, report) -> Table:
    table = Table(title=title)
    for col in ("behaviour", "value", "target", "pass", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for b in report:
        mark = "[green]yes[/]" if b.passed else "[red]no[/]"
        table.add_row(b.name, f"{b.value:.3f}", b.target, mark, b.detail)
    return table


def run(cfg: OrganismEvalConfig) -> None:
    """Print the planted-behaviour table (held-out prompts) of a model."""
    from interp.models import load_hf
    from interp.organism.behaviours import as_dicts, evaluate
    from sae.fsutil import write_text_atomically

    model, tokenizer = load_hf(cfg.model, device=cfg.device, dtype=cfg.dtype)
    report = evaluate(model, tokenizer, seed=cfg.seed)
    stdout().print(_table(f"Planted behaviours of {cfg.model} (held-out prompts)", report))
    if cfg.json is not None:
        write_text_atomically(Path(cfg.json), json.dumps(as_dicts(report), indent=2))


app.command("eval")(config_command(OrganismEvalConfig, run))
