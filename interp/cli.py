"""`interp <command>`: assembles each capability's command; each parses options into its config
and calls one library function. Imports no torch: `interp --help` answers at once."""

import typer

from interp.capture.cli import capture
from interp.cli_common import derived_epilog
from interp.dashboard.cli import register as register_dashboard
from interp.evals.cli import register as register_evals
from interp.explain.cli import register as register_explain
from interp.organism.cli import app as organism_app
from interp.patching.cli import register as register_patching
from interp.steering.cli import register as register_steering
from interp.train_sae.cli import train_sae
from interp.train_sae.config import TrainSAEConfig

app = typer.Typer(
    name="interp",
    help="Mechanistic interpretability toolkit: capture, SAEs, patching, steering.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("capture")(capture)
app.command("train-sae", epilog=derived_epilog(TrainSAEConfig))(train_sae)
app.add_typer(organism_app, name="organism")
for register in (
    register_dashboard,
    register_patching,
    register_explain,
    register_steering,
    register_evals,
):
    register(app)
