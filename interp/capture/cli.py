"""`interp capture`: activations from a text source into a sharded on-disk cache.

    interp capture --layer 12 --site resid_post --tokens 1000000 --out acts/

Options are the fields of `interp.capture.run.CaptureConfig` (help text from its docstrings);
the command builds one config and calls `capture_to_disk`.
"""

import ast
import inspect
import textwrap
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from interp.capture.run import CaptureConfig, CaptureResult, capture_to_disk
from interp.errors import InterpError


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
            if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())  # type: ignore[attr-defined]
    return docs


HELP = field_docs(CaptureConfig)
DEFAULT = CaptureConfig(layer=(0,))


def _opt(name: str, *flags: str) -> typer.models.OptionInfo:
    return typer.Option(*flags, help=HELP[name])


class _Bar:
    """rich progress bar fed by capture_to_disk's progress(done, total) callback."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("capturing"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task("capture", total=None, count="", speed="")
        self.start: tuple[float, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.start is None:  # shown from the first batch on, not while checking the input
            self.start = (now, done)
            self.progress.start()
        t0, d0 = self.start
        speed = f"{(done - d0) / (now - t0):,.0f} tok/s" if now > t0 and done > d0 else ""
        count = f"{done:,}/{total:,} tokens"
        self.progress.update(self.task, completed=done, total=total, count=count, speed=speed)


def _summary(result: CaptureResult) -> Table:
    table = Table(title=f"Activation cache {result.out}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("tokens in cache", f"{result.n_tokens:,}")
    table.add_row("shards (written / reused)", f"{result.shards_written} / {result.shards_skipped}")
    table.add_row("capture speed", f"{result.tokens_per_s:,.0f} tok/s")
    return table


def capture(
    layer: Annotated[list[int] | None, _opt("layer", "--layer")] = None,
    site: Annotated[str, _opt("site", "--site")] = DEFAULT.site,
    hook: Annotated[list[str] | None, _opt("hook", "--hook")] = None,
    tokens: Annotated[int, _opt("tokens", "--tokens")] = DEFAULT.tokens,
    out: Annotated[str, _opt("out", "--out")] = DEFAULT.out,
    model: Annotated[str, _opt("model", "--model")] = DEFAULT.model,
    dataset: Annotated[str, _opt("dataset", "--dataset")] = DEFAULT.dataset,
    split: Annotated[str, _opt("split", "--split")] = DEFAULT.split,
    text_field: Annotated[str, _opt("text_field", "--text-field")] = DEFAULT.text_field,
    ctx_len: Annotated[int, _opt("ctx_len", "--ctx-len")] = DEFAULT.ctx_len,
    batch_size: Annotated[int, _opt("batch_size", "--batch-size")] = DEFAULT.batch_size,
    shard_tokens: Annotated[int, _opt("shard_tokens", "--shard-tokens")] = DEFAULT.shard_tokens,
    device: Annotated[str, _opt("device", "--device")] = DEFAULT.device,
    dtype: Annotated[str, _opt("dtype", "--dtype")] = DEFAULT.dtype,
    seed: Annotated[int, _opt("seed", "--seed")] = DEFAULT.seed,
    resume: Annotated[bool, _opt("resume", "--resume/--no-resume")] = DEFAULT.resume,
) -> None:
    """Capture activations at hook points into a sharded safetensors cache (resumable)."""
    err = Console(stderr=True)
    values = {k: v for k, v in locals().items() if k != "err"}
    values["layer"], values["hook"] = tuple(layer or ()), tuple(hook or ())
    try:
        cfg = CaptureConfig(**values)
        bar = _Bar(err)
        try:
            result = capture_to_disk(cfg, progress=bar)
        finally:
            bar.progress.stop()
    except InterpError as e:
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    Console().print(_summary(result))
    if result.exhausted:
        err.print(
            f"[yellow]warning:[/] the dataset ran out after {result.n_tokens:,} tokens "
            f"(asked for {cfg.tokens:,})"
        )
