"""`train_sae_run(cfg)`: train SAEs on a model's activations, then evaluate them and report.

One LM forward pass feeds every SAE of a run (one per hook). The run folder's layout is in
`interp.train_sae.folder`; where activations and held-out tokens come from, in `.source`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from interp.errors import RunStopped
from interp.hooks import hook_names
from interp.models import load_model
from interp.train_sae import folder
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.folder import OnStep
from interp.train_sae.source import batch_source, check_cache, d_in, text_source
from sae.config import SAEConfig


class TrainSAEResult(NamedTuple):
    run_dir: Path
    """The run folder; each SAE is in run_dir / "saes" / <hook> (what `sae.load_sae` takes)."""
    metrics: dict[str, dict[str, Any]]
    """Per hook: the held-out metrics written to its metrics.json."""
    tokens_seen: int

    @property
    def sae_dirs(self) -> dict[str, Path]:
        """Per hook, the SAELens folder that `sae.load_sae` and SAELens's `SAE.load_from_disk`
        open."""
        return {hook: self.run_dir / "saes" / hook for hook in self.metrics}


class Prepared(NamedTuple):
    """A run's checked inputs: the loaded model, its hooks, the run folder, each SAE's config."""

    model: Any
    hooks: list[str]
    run_dir: Path
    saes: dict[str, SAEConfig]


def prepare(cfg: TrainSAEConfig) -> Prepared:
    """Check every input and load the model before anything is written."""
    run = folder.check_resume(cfg) if cfg.resume else None
    if run is None:
        folder.check_new_out(cfg)
    if not cfg.from_cache:
        text_source(cfg).check()
    model = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    hooks = hook_names(model, cfg.layers, cfg.site, cfg.hook, purpose="train on")
    dataset = check_cache(cfg, hooks).source.dataset if cfg.from_cache else cfg.dataset
    widths = d_in(model, hooks)
    saes = {h: cfg.sae_config(h, widths[h], dataset) for h in hooks}
    run_dir = run or (Path(cfg.out) if cfg.out else folder.default_out(cfg, hooks))
    if run is not None:
        folder.check_checkpoint_matches(run_dir, saes)
    return Prepared(model, hooks, run_dir, saes)


def train_sae_run(cfg: TrainSAEConfig, on_step: OnStep | None = None) -> TrainSAEResult:
    """Train (or resume) the SAEs of `cfg`, evaluate them on held-out tokens, write the report.

    A run stopped by SIGINT/SIGTERM or by a diverged loss raises `RunStopped`, whose message
    names the checkpoint and the command that resumes the run.
    """
    from interp.train_sae.evaluate import evaluate_run
    from interp.train_sae.figures import write_report

    model, hooks, run_dir, sae_cfgs = prepare(cfg)
    with stopped_runs(cfg, run_dir):
        result = _train(cfg, model, hooks, run_dir, sae_cfgs, on_step)
    if folder.rank() > 0:
        return TrainSAEResult(run_dir, {}, result.tokens_seen)
    metrics = evaluate_run(model, cfg, result.saes, run_dir)
    write_report(run_dir, folder.read_history(run_dir), metrics, result.feature_density)
    return TrainSAEResult(run_dir, metrics, result.tokens_seen)


def _train(cfg, model, hooks, run_dir, sae_cfgs, on_step):
    from sae.checkpoint import checkpoint_folders
    from sae.training import resume, train

    batches = batch_source(model, cfg, hooks)
    every = max(1, cfg.train.total_steps // 200)
    history = folder.History(run_dir / "history.jsonl", on_step, every)
    if cfg.resume and checkpoint_folders(run_dir):
        history.repair()
        saved = folder.saved_config(run_dir)
        lr = cfg.train.lr if cfg.train.lr != saved.train.lr else None
        return resume(run_dir, batches, on_step=history, lr=lr)
    if not cfg.resume:
        folder.create(run_dir, cfg)
    if folder.rank() == 0:  # a fresh run, or one killed before its step-0 checkpoint
        (run_dir / "history.jsonl").unlink(missing_ok=True)
    return train(sae_cfgs, cfg.train_config(), batches, run_dir=run_dir, on_step=history)


@contextmanager
def stopped_runs(cfg: TrainSAEConfig, run_dir: Path) -> Iterator[None]:
    """Signals and diverged losses as `RunStopped`, with the command that resumes the run."""
    from sae.errors import DivergenceError, NonFiniteLossError

    again = f"interp train-sae --resume {run_dir}"
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as stop:
        code = 130 if isinstance(stop, KeyboardInterrupt) else int(stop.code or 1)
        where = folder.latest_checkpoint_text(run_dir)
        raise RunStopped(
            f"training stopped by a signal; {where}; resume with: {again}", code
        ) from None
    except (NonFiniteLossError, DivergenceError) as err:
        lower = f"{cfg.train.lr / 10:g}"
        raise RunStopped(f"{err} Resume with a lower lr: {again} --lr {lower}") from err
