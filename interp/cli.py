"""`interp <command>`: each command parses options into a config and calls one library function.

Commands live beside the code they drive; this module only assembles the app.
"""

import typer

app = typer.Typer(
    name="interp",
    help="Mechanistic interpretability toolkit: capture, SAEs, patching, steering.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

from interp.organism.cli import app as organism_app  # noqa: E402

app.add_typer(organism_app, name="organism")

from interp.capture.cli import capture  # noqa: E402

app.command()(capture)

from interp.train_sae.cli import train_sae  # noqa: E402

app.command("train-sae")(train_sae)
