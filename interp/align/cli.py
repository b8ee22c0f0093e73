"""`interp align bake|orthogonalize|dpo|bipo`: move a behaviour into the model's weights.

    interp align bake --vector refusal.safetensors --scale 4 --out baked/
    interp align orthogonalize --vector jailbreak.safetensors --out ortho/
    interp align dpo --vector refusal.safetensors --prompts jailbreak --out aligned/
    interp align bipo --prompts jailbreak --layer 13 --out bipo.safetensors

Each writes an HF model folder (or, for bipo, a steering vector) with cfg.json, metrics.json and
an HTML report of `interp eval --baseline`. Options are the fields of `interp.align.config`.
"""

import typer

from interp.align.cli_edits import register_edits
from interp.align.cli_train import register_training

app = typer.Typer(
    help="Alignment from steering vectors: weight edits (bake, orthogonalize), DPO, BiPO.",
    no_args_is_help=True,
)
register_edits(app)
register_training(app)


def register(root: typer.Typer) -> None:
    """Add `interp align ...` to the root `interp` app."""
    root.add_typer(app, name="align")
