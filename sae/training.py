"""Train one or several SAEs on any stream of activation batches.

    result = train({"blocks.3.hook_resid_post": SAEConfig(...)}, TrainConfig(...), make_batches,
                   run_dir="runs/x", on_step=progress)
    result = resume("runs/x", make_batches)          # after SIGINT/SIGTERM or a crash

`make_batches` is described in `sae.batches`. Several SAEs train together from one stream
(hook_name -> batch), each with its own Adam. Every step: normalise the input (`sae.normalize`),
loss = mse + sparsity_scale * sparsity + aux_k_coefficient * auxk (`sae.base.LossTerms`),
backward, average gradients over data-parallel ranks, project the decoder gradient, Adam step at
the scheduled lr (`sae.schedule`), re-project the parameters, update firing statistics. The
library never prints: `on_step(step, tokens_seen, metrics)` gets, per SAE name, the batch's
loss, mse, sparsity, auxk, l0, explained_variance, dead_fraction and lr (global over ranks).
"""

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from sae.base import SAE, LossTerms
from sae.batches import Batch, BatchSource, local_shards, open_stream
from sae.checkpoint import TrainState, latest_checkpoint, read_checkpoint, write_checkpoint
from sae.config import SAEConfig, TrainConfig
from sae.device import resolve_device
from sae.distributed import (
    all_reduce_,
    average_gradients_,
    barrier,
    broadcast_module_,
    init_from_env,
    rank_info,
)
from sae.errors import SAEError
from sae.firing import FiringStats
from sae.interrupt import StopRequest, stop_on_signals
from sae.io import save_sae
from sae.normalize import estimate_norm_scaling_factor, folded_copy
from sae.registry import build_sae
from sae.schedule import lr_factor, sparsity_scale

StepMetrics = dict[str, dict[str, float]]
OnStep = Callable[[int, int, StepMetrics], None]


class NonFiniteLossError(SAEError, RuntimeError):
    """The loss became NaN or inf; no optimiser step was taken with it."""

    def __init__(self, step: int, name: str, values: dict[str, float], checkpoint: Path | None):
        self.step, self.name, self.values, self.checkpoint = step, name, values, checkpoint
        terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint exists"
        super().__init__(
            f"non-finite loss at step {step} for SAE {name!r} ({terms}); training stopped "
            f"before updating the weights; {kept}. Lower the lr or check the activations."
        )


class TrainResult(NamedTuple):
    """What a finished run returns."""

    saes: dict[str, SAE]
    """Trained SAEs with the norm factor folded in (they read raw activations), eval mode."""
    norm_scaling_factors: dict[str, float | None]
    """s per SAE (it trained on x * s); None for normalize_activations='none'."""
    feature_density: dict[str, Tensor]
    """Per-latent firing frequency over the last one to two dead-token windows."""
    last_metrics: StepMetrics
    """The final step's metrics, as passed to on_step."""
    steps: int
    tokens_seen: int
    run_dir: Path | None


def make_optimizer(sae: SAE, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over all the SAE's parameters (lr is set every step by the schedule)."""
    return torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps)


def _named_saes(
    saes: SAE | SAEConfig | Mapping[str, SAE | SAEConfig],
) -> dict[str, SAE | SAEConfig]:
    if isinstance(saes, SAE | SAEConfig):
        cfg = saes.cfg if isinstance(saes, SAE) else saes
        return {cfg.hook_name or "sae": saes}
    if not saes:
        raise ValueError("no SAEs to train")
    for name in saes:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"SAE name {name!r} must be non-empty, without '/', not start with .")
    return dict(saes)


def _fresh_state(
    saes: SAE | SAEConfig | Mapping[str, SAE | SAEConfig], cfg: TrainConfig
) -> TrainState:
    modules = {
        name: s if isinstance(s, SAE) else build_sae(s, seed=cfg.seed)
        for name, s in _named_saes(saes).items()
    }
    for sae in modules.values():
        broadcast_module_(sae)
    return TrainState(
        train_cfg=cfg,
        saes=modules,
        optimizers={n: make_optimizer(s, cfg) for n, s in modules.items()},
        firing={n: FiringStats(s.cfg.d_sae, cfg.dead_window) for n, s in modules.items()},
        norm_factors={},
    )


def train(
    saes: SAE | SAEConfig | Mapping[str, SAE | SAEConfig],
    cfg: TrainConfig,
    batches: BatchSource,
    *,
    run_dir: str | Path | None = None,
    on_step: OnStep | None = None,
) -> TrainResult:
    """Train SAEs (modules are trained in place; configs are built with cfg.seed) from scratch.

    A single SAE is named by its hook_name (or "sae"). With `run_dir`, checkpoints go to
    run_dir/checkpoints and the final SAELens folders to run_dir/saes/<name>. Under torchrun
    (WORLD_SIZE > 1) the process group is initialised here if needed and training is
    data-parallel.
    """
    first = next(iter(_named_saes(saes).values()))
    init_from_env(resolve_device((first.cfg if isinstance(first, SAE) else first).device))
    if run_dir is not None and latest_checkpoint(Path(run_dir)) is not None:
        raise FileExistsError(f"{run_dir} already holds a run; use resume({str(run_dir)!r}, ...)")
    return Trainer(_fresh_state(saes, cfg), batches, run_dir, on_step).fit()


def resume(
    run_dir: str | Path, batches: BatchSource, *, on_step: OnStep | None = None
) -> TrainResult:
    """Continue the run in `run_dir` from its latest checkpoint, with the same batch source
    (asked for the stream after the tokens already trained on)."""
    folder = latest_checkpoint(Path(run_dir))
    if folder is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume (checkpoints/LATEST)")
    state = read_checkpoint(folder, make_optimizer)
    init_from_env(next(iter(state.saes.values())).W_enc.device)
    return Trainer(state, batches, Path(run_dir), on_step).fit()


class Trainer:
    """One run; `train` and `resume` build it. Checkpoints are written every
    `checkpoint_every` steps, after a SIGINT/SIGTERM (then the run stops), and at the end."""

    def __init__(
        self,
        state: TrainState,
        batches: BatchSource,
        run_dir: str | Path | None,
        on_step: OnStep | None,
    ) -> None:
        self.state, self.cfg, self.batches, self.on_step = state, state.train_cfg, batches, on_step
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.rank, self.world_size = rank_info()
        if self.cfg.batch_tokens % self.world_size:
            raise ValueError(
                f"batch_tokens={self.cfg.batch_tokens} is not divisible by the "
                f"{self.world_size} data-parallel ranks"
            )
        self.names = list(state.saes)
        self.last_checkpoint = latest_checkpoint(self.run_dir) if self.run_dir else None
        self.last_metrics: StepMetrics = {}
        self.checkpoint_time = time.monotonic()
        self.loss_fns = {
            n: torch.compile(s.loss) if self.cfg.compile else s.loss for n, s in state.saes.items()
        }

    def fit(self) -> TrainResult:
        """Run the remaining steps and return the result."""
        st = self.state
        stream = open_stream(self.batches, st.tokens_seen, self.cfg.batch_tokens)
        stream = self._estimate_norms(stream)
        for sae in st.saes.values():
            sae.train()
        with stop_on_signals() as stop:
            while st.step < self.cfg.total_steps:
                self.last_metrics = self._train_step(self._next_batch(stream))
                st.step += 1
                st.tokens_seen += self.cfg.batch_tokens
                if self.on_step is not None:
                    self.on_step(st.step, st.tokens_seen, self.last_metrics)
                self._checkpoint_if_needed(stop)
        return self._finish()

    def _next_batch(self, stream: Iterator[Batch]) -> Batch:
        batch = next(stream, None)
        if batch is None:
            raise ValueError(
                f"the batch source ran out after {self.state.tokens_seen} tokens, but "
                f"TrainConfig.total_tokens is {self.cfg.total_tokens}"
            )
        return batch

    def _estimate_norms(self, stream: Iterator[Batch]) -> Iterator[Batch]:
        """Fill norm factors of SAEs that have none yet from the first batches, which are
        then trained on as usual."""
        pending = [n for n in self.names if n not in self.state.norm_factors]
        if not pending:
            return stream
        head = list(itertools.islice(stream, self.cfg.norm_estimation_batches))
        shards = [self._shards(b) for b in head]
        for name in pending:
            if self.state.saes[name].cfg.normalize_activations == "none":
                self.state.norm_factors[name] = None
            else:
                xs = (s[name] for s in shards)
                self.state.norm_factors[name] = estimate_norm_scaling_factor(xs)
        return itertools.chain(head, stream)

    def _shards(self, batch: Batch) -> dict[str, Tensor]:
        return local_shards(batch, self.names, self.cfg.batch_tokens, self.rank, self.world_size)

    def _train_step(self, batch: Batch) -> StepMetrics:
        shards = self._shards(batch)
        return {name: self._step_sae(name, shards[name]) for name in self.names}

    def _step_sae(self, name: str, x: Tensor) -> dict[str, float]:
        st, cfg = self.state, self.cfg
        sae, opt, firing = st.saes[name], st.optimizers[name], st.firing[name]
        x = x.to(sae.W_enc.device, sae.W_enc.dtype)
        if st.norm_factors[name] is not None:
            x = x * st.norm_factors[name]
        dead = firing.dead_mask().to(x.device)
        with self._autocast(x.device):
            terms = self.loss_fns[name](x, dead)
            total = (
                terms.mse
                + sparsity_scale(st.step, cfg) * terms.sparsity
                + cfg.aux_k_coefficient * terms.auxk
            )
        metrics, fired = self._global_stats(x, terms, total)
        if not all(math.isfinite(metrics[k]) for k in ("loss", "mse", "sparsity", "auxk")):
            raise NonFiniteLossError(st.step + 1, name, metrics, self.last_checkpoint)
        opt.zero_grad(set_to_none=True)
        total.backward()
        average_gradients_(list(sae.parameters()))
        sae.project_decoder_grad_()
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip_norm)
        lr = cfg.lr * lr_factor(st.step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        sae.after_step_()
        firing.update(fired, cfg.batch_tokens)
        return metrics | {"dead_fraction": dead.float().mean().item(), "lr": lr}

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if device.type == "cuda" and self.cfg.autocast_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def _global_stats(
        self, x: Tensor, terms: LossTerms, total: Tensor
    ) -> tuple[dict[str, float], Tensor]:
        """Loss terms (mean over ranks of local means), l0 and explained variance of the global
        batch, and the global per-latent firing counts; one all-reduce."""
        xd, d_in = x.double(), x.shape[-1]
        losses = torch.stack([total, terms.mse, terms.sparsity, terms.auxk]).double()
        sums = torch.stack([(xd - terms.x_hat.double()).pow(2).sum(), xd.pow(2).sum()])
        packed = torch.cat([losses / self.world_size, sums, xd.sum(0), terms.fired.double()])
        all_reduce_(packed)
        n = self.cfg.batch_tokens
        sse, sum_sq = packed[4].item(), packed[5].item()
        sum_x, fired = packed[6 : 6 + d_in], packed[6 + d_in :]
        variance = sum_sq - sum_x.pow(2).sum().item() / n
        keys = ("loss", "mse", "sparsity", "auxk")
        metrics = dict(zip(keys, packed[:4].tolist(), strict=True))
        metrics["l0"] = fired.sum().item() / n
        metrics["explained_variance"] = 1.0 - sse / variance if variance > 0 else float("nan")
        return metrics, fired.round().long().cpu()

    def _checkpoint_if_needed(self, stop: StopRequest) -> None:
        # Every rank stops at the same step, even if only one received the signal, and writes
        # a timed checkpoint at the same step as rank 0 (the others' clocks count as 0).
        seconds = self.cfg.checkpoint_seconds
        due = seconds > 0 and self.rank == 0 and time.monotonic() - self.checkpoint_time >= seconds
        flags = all_reduce_(torch.tensor([stop.signum or 0, int(due)]), "max").tolist()
        signum, due = int(flags[0]), bool(flags[1])
        every = self.cfg.checkpoint_every
        periodic = every > 0 and self.state.step % every == 0
        if self.run_dir is not None and (periodic or due or signum):
            self._write_checkpoint()
        if signum:
            stop.signum = signum
            stop.raise_for_signal()

    def _write_checkpoint(self) -> None:
        if self.rank == 0:
            write_checkpoint(self.run_dir, self.state)
        barrier()
        self.last_checkpoint = latest_checkpoint(self.run_dir)
        self.checkpoint_time = time.monotonic()

    def _finish(self) -> TrainResult:
        st = self.state
        if self.run_dir is not None and (
            self.last_checkpoint is None or not self.last_checkpoint.name.endswith(f"{st.step:08d}")
        ):
            self._write_checkpoint()
        density = {n: f.feature_density() for n, f in st.firing.items()}
        folded = {}
        for name, sae in st.saes.items():
            factor = st.norm_factors[name]
            folded[name] = (folded_copy(sae, factor) if factor is not None else sae).eval()
            if self.run_dir is not None and self.rank == 0:
                save_sae(
                    sae,
                    self.run_dir / "saes" / name,
                    feature_density=density[name],
                    metrics={"steps": st.step, "tokens_seen": st.tokens_seen}
                    | self.last_metrics.get(name, {}),
                    norm_scaling_factor=factor,
                    overwrite=True,
                )
        barrier()
        return TrainResult(
            folded,
            dict(st.norm_factors),
            density,
            self.last_metrics,
            st.step,
            st.tokens_seen,
            self.run_dir,
        )
