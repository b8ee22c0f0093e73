"""`interp capture`: activations from a text source into a sharded on-disk cache.

    interp capture --layer 12 --site resid_post --tokens 1000000 --out acts/

The options are the fields of `interp.capture.config.CaptureConfig` (help from its docstrings).
"""

from rich.table import Table

from interp.capture.config import CaptureConfig
from interp.cli_common import ProgressBar, config_command, stdout


def _summary(result) -> Table:
    table = Table(title=f"Activation cache {result.out}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("tokens in cache", f"{result.n_tokens:,}")
    table.add_row("shards (written / reused)", f"{result.shards_written} / {result.shards_skipped}")
    table.add_row("capture speed", f"{result.tokens_per_s:,.0f} tok/s")
    return table


def run(cfg: CaptureConfig) -> None:
    """Capture activations at hook points into a sharded safetensors cache (resumable)."""
    from interp.capture.run import capture_to_disk

    with ProgressBar("capturing") as bar:
        result = capture_to_disk(cfg, progress=bar.update)
    stdout().print(_summary(result))
    if result.exhausted:
        bar.progress.console.print(
            f"[yellow]warning:[/] the dataset ran out after {result.n_tokens:,} tokens "
            f"(asked for {cfg.tokens:,})"
        )


capture = config_command(CaptureConfig, run)
