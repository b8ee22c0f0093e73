"""`interp train-sae`: train SAEs on a model's activations and write SAELens-format folders.

    interp train-sae --layer 12
    interp train-sae --layers 4,8,12 --arch batchtopk --expansion 16 --k 32

Options are the fields of `interp.train_sae.run.TrainSAEConfig` (help from its docstrings).
"""

import time
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from interp.capture.cli import field_docs
from interp.errors import InterpError
from interp.train_sae.run import HEADLINE_METRICS, TrainSAEConfig, TrainSAEResult, train_sae_run
from sae.registry import ARCHITECTURES
from sae.training import NonFiniteLossError

HELP = field_docs(TrainSAEConfig)
DEFAULT = TrainSAEConfig()
Arch = Enum("Arch", {name: name for name in sorted(ARCHITECTURES)}, type=str)
DEFAULT_ARCH = Arch(DEFAULT.arch)


def _opt(name: str, *flags: str) -> typer.models.OptionInfo:
    return typer.Option(*flags, help=HELP[name])


def parse_layers(layer: int | None, layers: str | None) -> tuple[int, ...]:
    """--layer 12 or --layers 4,8,12 (not both); default (12,)."""
    if layer is not None and layers is not None:
        raise InterpError("pass --layer or --layers, not both")
    if layers is not None:
        try:
            return tuple(int(x) for x in layers.split(",") if x.strip())
        except ValueError:
            raise InterpError(
                f"--layers must be comma-separated integers, got {layers!r}"
            ) from None
    return (layer,) if layer is not None else DEFAULT.layers


class _Bar:
    """Progress bar fed by on_step: tokens, tokens/s, and each SAE's L0 and explained variance."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("training"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task("train", total=total, speed="", stats="")
        self.start: tuple[float, int] | None = None

    def __call__(self, step: int, tokens: int, metrics: dict[str, dict[str, float]]) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, tokens)
            self.progress.start()
        t0, n0 = self.start
        speed = f"{(tokens - n0) / (now - t0):,.0f} tok/s" if now > t0 else ""
        stats = "  ".join(
            f"{h.split('.hook_')[0]}: L0 {m['l0']:.1f} EV {m['explained_variance']:.3f}"
            for h, m in metrics.items()
        )
        self.progress.update(self.task, completed=tokens, speed=speed, stats=stats)


def _summary(result: TrainSAEResult) -> Table:
    table = Table(title=f"Held-out metrics, {result.run_dir}")
    table.add_column("metric")
    for hook in result.metrics:
        table.add_column(hook, justify="right")
    for key in HEADLINE_METRICS:
        values = [result.metrics[h].get(key) for h in result.metrics]
        table.add_row(
            key,
            *(
                "n/a" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.4f}"
                for v in values
            ),
        )
    return table


def train_sae(
    layer: Annotated[
        int | None, typer.Option("--layer", help="Block to train one SAE on (default 12).")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            "--layers",
            help="Comma-separated blocks, one SAE each from one forward pass, e.g. 4,8,12.",
        ),
    ] = None,
    site: Annotated[str, _opt("site", "--site")] = DEFAULT.site,
    hook: Annotated[list[str] | None, _opt("hooks", "--hook")] = None,
    arch: Annotated[Arch, _opt("arch", "--arch")] = DEFAULT_ARCH,  # type: ignore[valid-type]
    expansion: Annotated[int, _opt("expansion", "--expansion")] = DEFAULT.expansion,
    d_sae: Annotated[int | None, _opt("d_sae", "--d-sae")] = DEFAULT.d_sae,
    k: Annotated[int, _opt("k", "--k")] = DEFAULT.k,
    l1_coefficient: Annotated[
        float, _opt("l1_coefficient", "--l1-coefficient")
    ] = DEFAULT.l1_coefficient,
    l0_coefficient: Annotated[
        float, _opt("l0_coefficient", "--l0-coefficient")
    ] = DEFAULT.l0_coefficient,
    tokens: Annotated[int, _opt("tokens", "--tokens")] = DEFAULT.tokens,
    batch_tokens: Annotated[int, _opt("batch_tokens", "--batch-tokens")] = DEFAULT.batch_tokens,
    lr: Annotated[float, _opt("lr", "--lr")] = DEFAULT.lr,
    model: Annotated[str, _opt("model", "--model")] = DEFAULT.model,
    dataset: Annotated[str, _opt("dataset", "--dataset")] = DEFAULT.dataset,
    ctx_len: Annotated[int, _opt("ctx_len", "--ctx-len")] = DEFAULT.ctx_len,
    batch_size: Annotated[int, _opt("batch_size", "--batch-size")] = DEFAULT.batch_size,
    eval_tokens: Annotated[int, _opt("eval_tokens", "--eval-tokens")] = DEFAULT.eval_tokens,
    from_cache: Annotated[str | None, _opt("from_cache", "--from-cache")] = None,
    out: Annotated[str | None, _opt("out", "--out")] = None,
    resume: Annotated[str | None, _opt("resume", "--resume")] = None,
    device: Annotated[str, _opt("device", "--device")] = DEFAULT.device,
    seed: Annotated[int, _opt("seed", "--seed")] = DEFAULT.seed,
    compile: Annotated[bool, _opt("compile", "--compile/--no-compile")] = DEFAULT.compile,
) -> None:
    """Train sparse autoencoders on a model's activations (SAELens-format output, resumable)."""
    err = Console(stderr=True)
    try:
        values = {k: v for k, v in locals().items() if k not in ("err", "layer", "hook")}
        values["layers"] = (
            () if hook and layer is None and layers is None else parse_layers(layer, layers)
        )
        values["hooks"], values["arch"] = tuple(hook or ()), arch.value
        cfg = TrainSAEConfig(**values)
        bar = _Bar(err, cfg.tokens)
        try:
            result = train_sae_run(cfg, on_step=bar)
        finally:
            bar.progress.stop()
    except (InterpError, ValueError, FileExistsError, FileNotFoundError, NonFiniteLossError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    if result.metrics:
        Console().print(_summary(result))
        Console().print(
            f"wrote {result.run_dir}/saes/<hook>/ (SAELens format) and {result.run_dir}/report.html"
        )
