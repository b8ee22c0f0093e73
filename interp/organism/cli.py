"""`interp organism ...`: commands about the embedded model organism."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from interp.organism import WEIGHTS_DIR

app = typer.Typer(
    help="The embedded model organism and its planted behaviours.", no_args_is_help=True
)


def _model_dir(model: str) -> Path:
    path = WEIGHTS_DIR if model == "default" else Path(model)
    if not (path / "config.json").is_file():
        what = (
            "the embedded default model is missing from the package"
            if model == "default"
            else (f"{model!r} is not a HuggingFace model folder (no config.json)")
        )
        raise typer.BadParameter(f"{what}; pass --model with a folder holding config.json")
    return path


@app.command("eval")
def eval_cmd(
    model: Annotated[
        str, typer.Option(help="'default' (the embedded model) or a local HF model folder.")
    ] = "default",
    seed: Annotated[int, typer.Option(help="Seed for drawing held-out prompts.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the table as JSON here.")
    ] = None,
) -> None:
    """Print the planted-behaviour table (held-out data) for a model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.organism.behaviours import as_dicts, evaluate

    path = _model_dir(model)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    report = evaluate(lm, tokenizer, seed=seed)
    table = Table(title=f"Planted behaviours of {model} (held-out prompts)")
    for col in ("behaviour", "value", "target", "pass", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for b in report:
        mark = "[green]yes[/]" if b.passed else "[red]no[/]"
        table.add_row(b.name, f"{b.value:.3f}", b.target, mark, b.detail)
    Console().print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(as_dicts(report), indent=2))
