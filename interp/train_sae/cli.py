"""`interp train-sae`: train SAEs on a model's activations and write SAELens-format folders.

    interp train-sae --layer 12
    interp train-sae --layer 4,8,12 --arch batchtopk --expansion 16 --k 32

The options are the fields of `interp.train_sae.config.TrainSAEConfig` and of the `sae.SAEConfig`
and `sae.TrainConfig` nested in it (help from their docstrings).
"""

from rich.table import Table

from interp.cli_common import ProgressBar, config_command, stdout
from interp.train_sae.config import TrainSAEConfig


def _stats(metrics: dict[str, dict[str, float]]) -> str:
    return "  ".join(
        f"{h.split('.hook_')[0]}: L0 {m['l0']:.1f} EV {m['explained_variance']:.3f}"
        for h, m in metrics.items()
    )


def _summary(result) -> Table:
    from interp.train_sae.evaluate import HEADLINE_METRICS, metric_text

    table = Table(title=f"Held-out metrics, {result.run_dir} (± jackknife standard error)")
    table.add_column("metric")
    for hook in result.metrics:
        table.add_column(hook, justify="right")
    for key in HEADLINE_METRICS:
        table.add_row(key, *(metric_text(m, key) for m in result.metrics.values()))
    return table


def run(cfg: TrainSAEConfig) -> None:
    """Train sparse autoencoders on a model's activations (SAELens-format output, resumable)."""
    from interp.train_sae.run import train_sae_run

    total = cfg.train.total_tokens
    with ProgressBar("training") as bar:
        result = train_sae_run(
            cfg, on_step=lambda step, tokens, metrics: bar.update(tokens, total, _stats(metrics))
        )
    if result.metrics:
        out = stdout()
        out.print(_summary(result))
        for hook, path in result.sae_dirs.items():
            out.print(f"wrote {hook}: {path} (SAELens format)", highlight=False, soft_wrap=True)
        out.print(f"report: {result.run_dir / 'report.html'}", highlight=False, soft_wrap=True)


def resumed(given: dict) -> TrainSAEConfig | None:
    """With --resume DIR, the run's saved config: the other options then change only what they
    name (and the run refuses all changes but --out, --device and --lr)."""
    if not given.get("resume"):
        return None
    from interp.train_sae.folder import saved_config

    return saved_config(given["resume"])


train_sae = config_command(TrainSAEConfig, run, base=resumed)
