"""`interp <command>`: assembles each capability's command; each parses options into its config
and calls one library function. Imports no torch: `interp --help` answers at once."""

import typer

from interp.align.cli import register as register_align
from interp.capture.cli import capture
from interp.cli_common import config_command, derived_epilog, stdout
from interp.dashboard.cli import register as register_dashboard
from interp.doctor import DoctorConfig
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
    register_align,
):
    register(app)


def _doctor(cfg) -> None:
    """Versions, devices, whether the default model loads and whether the hub answers."""
    from rich.table import Table

    from interp.doctor import diagnose

    d = diagnose(cfg)
    table = Table(title="interp doctor", show_header=False)
    table.add_column("what")
    table.add_column("found")
    table.add_row("python", f"{d.python} ({d.platform})")
    for dist, version in d.versions.items():
        table.add_row(dist, version or "[red]not installed[/]")
    table.add_row("torch build", d.torch_build)
    gpus = "; ".join(f"cuda:{g.index} {g.name}, {g.memory_gib:.1f} GiB" for g in d.gpus)
    table.add_row("CUDA", gpus if d.cuda_available else "not available")
    table.add_row("CPU threads", str(d.cpu_threads))
    table.add_row("--device auto", d.default_device)
    if cfg.model:
        model = (
            f"loads ({d.default_model_seconds:.1f} s)"
            if d.default_model_loads
            else f"[red]does not load[/]: {d.default_model_error}"
        )
        table.add_row("default model", model)
    if d.hub_reachable is not None:
        hub = (
            "reachable" if d.hub_reachable else "not reachable (hub names fail; local folders work)"
        )
        table.add_row("Hugging Face hub", hub)
    out = stdout()
    out.print(table)
    for problem in d.problems:
        out.print(f"[red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    if d.problems:
        raise typer.Exit(code=1)


app.command("doctor")(config_command(DoctorConfig, _doctor))
