"""Train one or several SAEs on any stream of activation batches.

    result = train({"blocks.3.hook_resid_post": SAEConfig(...)}, TrainConfig(...), make_batches,
                   run_dir="runs/x", on_step=progress)
    result = resume("runs/x", make_batches)          # after SIGINT/SIGTERM or a crash
    result = resume("runs/x", make_batches, lr=1e-4) # after a DivergenceError

`make_batches` is described in `sae.batches`. Several SAEs train together from one stream
(hook_name -> batch), each with its own Adam. Every step: normalise the input (`sae.normalize`),
loss = mse + sparsity_scale * sparsity + aux_k_coefficient * auxk (`sae.base.LossTerms`),
backward, average gradients over data-parallel ranks, project the decoder gradient, Adam step at
the scheduled lr (`sae.schedule`), re-project the parameters, update firing statistics. The
library never prints: `on_step(step, tokens_seen, metrics)` gets, per SAE name, the batch's
loss, mse, sparsity, auxk, l0, explained_variance, dead_fraction and lr (global over ranks).

A run with a `run_dir` writes a checkpoint at step 0, before anything else, so that it can be
resumed whenever it is killed. It stops with `NonFiniteLossError` at a NaN/inf loss and with
`DivergenceError` when the reconstruction error explodes (see `DIVERGENCE_RATIO`), both before
the bad step updates the weights; a checkpoint is never written from diverged weights, so the
last one is always a good place to resume from (with a lower lr).
"""

import contextlib
import dataclasses
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from sae.base import SAE, LossTerms
from sae.batches import Batch, BatchSource, local_shards, open_stream
from sae.checkpoint import (
    TrainState,
    checkpoint_folders,
    checkpoint_name,
    latest_checkpoint,
    read_checkpoint,
    usable_checkpoint,
    write_checkpoint,
)
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
from sae.errors import CheckpointWarning, DivergenceError, NonFiniteLossError
from sae.firing import FiringStats
from sae.interrupt import StopRequest, stop_on_signals
from sae.io import save_sae
from sae.normalize import estimate_norm_scaling_factor, folded_copy
from sae.registry import build_sae
from sae.schedule import lr_factor, sparsity_scale

StepMetrics = dict[str, dict[str, float]]
OnStep = Callable[[int, int, StepMetrics], None]

DIVERGENCE_RATIO = 1e4
"""The weights have diverged on a batch when sum_n ||x_n - x_hat_n||^2 > 1e4 * sum_n ||x_n||^2:
x_hat is on average a hundred times further from x than the zero vector is. The ratio (1 for
x_hat = 0) is scale-free and, unlike explained variance, does not punish uncentred inputs: the
harmless x_hat = 0 has EV = -100 on activations whose mean is 10 standard deviations from 0.
Measured on 40-step runs of every architecture (d_in 64, 4-64x latents, k up to 128,
uncentred anisotropic inputs): initial SAEs are at 0.4-18; lr 1e-2 peaks at 257; lr 1e-1 spikes
to 1e5-1.6e6 for one or two steps, then falls to ~0.03; lr 1 swings between 1e2 and 1e10; lr
100 and 1e6 pass 1e12 at step 2 and keep growing. tests/test_sae_training.py keeps the lr 1e-1
spike and the lr 1e6 run."""
DIVERGENCE_STEPS = 10
"""Consecutive diverged steps that stop a run. The recoverable spikes above last one or two."""


def _reconstruction_sums(x: Tensor, x_hat: Tensor) -> Tensor:
    """[sse, sum ||x||^2, sum_n x_n (d_in)] of one rank's rows, in float64, to be all-reduced."""
    xd = x.double()
    sums = torch.stack([(xd - x_hat.double()).pow(2).sum(), xd.pow(2).sum()])
    return torch.cat([sums, xd.sum(0)])


def _ratio_and_ev(sums: Tensor, n: int) -> tuple[float, float]:
    """(divergence ratio sse / sum ||x||^2, explained variance 1 - sse / sum ||x - mean||^2)
    from the global `_reconstruction_sums` of n rows."""
    sse, sum_sq = sums[0].item(), sums[1].item()
    variance = sum_sq - sums[2:].pow(2).sum().item() / n
    ev = 1.0 - sse / variance if variance > 0 else float("nan")
    return (sse / sum_sq if sum_sq > 0 else 0.0), ev


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
    if run_dir is not None and checkpoint_folders(Path(run_dir)):
        raise FileExistsError(f"{run_dir} already holds a run; use resume({str(run_dir)!r}, ...)")
    return Trainer(_fresh_state(saes, cfg), batches, run_dir, on_step).fit()


def resume(
    run_dir: str | Path,
    batches: BatchSource,
    *,
    on_step: OnStep | None = None,
    lr: float | None = None,
) -> TrainResult:
    """Continue the run in `run_dir` from its newest checkpoint that passes its checksums (an
    older one, with a CheckpointWarning, when the newest is corrupt), with the same batch source
    (asked for the stream after the tokens already trained on). `on_step` is called for the
    steps after the checkpoint's only.

    lr: a new peak learning rate from here on (e.g. after a DivergenceError); the schedule's
        shape and Adam's state are kept, and later checkpoints record the new TrainConfig.
    """
    folder = usable_checkpoint(Path(run_dir))
    if folder is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume (checkpoints/step_*)")
    state = read_checkpoint(folder, make_optimizer)
    if lr is not None:
        state.train_cfg = dataclasses.replace(state.train_cfg, lr=lr)
    init_from_env(next(iter(state.saes.values())).W_enc.device)
    return Trainer(state, batches, Path(run_dir), on_step, last_checkpoint=folder).fit()


class Trainer:
    """One run; `train` and `resume` build it. Checkpoints are written every
    `checkpoint_every` steps, after a SIGINT/SIGTERM (then the run stops), and at the end."""

    def __init__(
        self,
        state: TrainState,
        batches: BatchSource,
        run_dir: str | Path | None,
        on_step: OnStep | None,
        last_checkpoint: Path | None = None,
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
        self.last_checkpoint = last_checkpoint
        self.last_metrics: StepMetrics = {}
        self.last_inputs: dict[str, Tensor] = {}  # the last step's (normalised) inputs
        self.diverged_steps = dict.fromkeys(self.names, 0)
        self.checkpoint_time = time.monotonic()
        self.stream: Iterator[Batch] | None = None
        self.head: list[Batch] = []  # batches read ahead for the norm estimate, not trained yet
        self.loss_fns = {
            n: torch.compile(s.loss) if self.cfg.compile else s.loss for n, s in state.saes.items()
        }

    def fit(self) -> TrainResult:
        """Run the remaining steps and return the result."""
        st = self.state
        if self.run_dir is not None and self.last_checkpoint is None:
            self._write_checkpoint()  # step 0: resumable however early the run is killed
        self.stream = open_stream(
            self.batches, st.tokens_seen, self.cfg.batch_tokens, st.stream_state
        )
        self._estimate_norms()
        for sae in st.saes.values():
            sae.train()
        with stop_on_signals() as stop:
            while st.step < self.cfg.total_steps:
                self.last_metrics = self._train_step(self._next_batch())
                st.step += 1
                st.tokens_seen += self.cfg.batch_tokens
                if self.on_step is not None:
                    self.on_step(st.step, st.tokens_seen, self.last_metrics)
                self._checkpoint_if_needed(stop)
        return self._finish()

    def _next_batch(self) -> Batch:
        batch = self.head.pop(0) if self.head else next(self.stream, None)
        if batch is None:
            raise ValueError(
                f"the batch source ran out after {self.state.tokens_seen} tokens, but "
                f"TrainConfig.total_tokens is {self.cfg.total_tokens}"
            )
        return batch

    def _estimate_norms(self) -> None:
        """Fill norm factors of SAEs that have none yet from the first batches, which are
        then trained on as usual (they wait in `self.head`)."""
        pending = [n for n in self.names if n not in self.state.norm_factors]
        if not pending:
            return
        self.head = list(itertools.islice(self.stream, self.cfg.norm_estimation_batches))
        shards = [self._shards(b) for b in self.head]
        for name in pending:
            if self.state.saes[name].cfg.normalize_activations == "none":
                self.state.norm_factors[name] = None
            else:
                xs = (s[name] for s in shards)
                self.state.norm_factors[name] = estimate_norm_scaling_factor(xs)

    def _stream_state(self) -> dict[str, Tensor] | None:
        """The batch stream's state for the checkpoint: None when the stream has none, or when
        batches read ahead for the norm estimate are still waiting (a resume then recomputes)."""
        state_dict = getattr(self.stream, "state_dict", None)
        return None if state_dict is None or self.head else state_dict()

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
        metrics, fired, ratio = self._global_stats(x, terms, total)
        if not all(math.isfinite(metrics[k]) for k in ("loss", "mse", "sparsity", "auxk")):
            raise NonFiniteLossError(st.step + 1, name, metrics, self.last_checkpoint)
        self._check_divergence(name, ratio, metrics["explained_variance"])
        self.last_inputs[name] = x
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

    def _check_divergence(self, name: str, ratio: float, ev: float) -> None:
        """Count consecutive diverged steps; stop at DIVERGENCE_STEPS, before this step's
        update."""
        streak = self.diverged_steps[name] + 1 if ratio > DIVERGENCE_RATIO else 0
        self.diverged_steps[name] = streak
        if streak >= DIVERGENCE_STEPS:
            why = f"for {streak} steps in a row; training stopped before updating the weights"
            raise DivergenceError(self.state.step + 1, name, ratio, ev, self.last_checkpoint, why)

    @torch.no_grad()
    def _diverged_now(self) -> tuple[str, float, float] | None:
        """(name, ratio, explained variance) of the first SAE whose current weights diverge on
        the last step's inputs, else None. A train-mode forward pass, which changes nothing (a
        BatchTopK threshold moves only in `loss`); collective under data parallelism."""
        for name, x in self.last_inputs.items():
            with self._autocast(x.device):
                x_hat = self.state.saes[name](x)
            sums = all_reduce_(_reconstruction_sums(x, x_hat))
            ratio, ev = _ratio_and_ev(sums, self.cfg.batch_tokens)
            if not ratio <= DIVERGENCE_RATIO:  # NaN too
                return name, ratio, ev
        return None

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if device.type == "cuda" and self.cfg.autocast_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def _global_stats(
        self, x: Tensor, terms: LossTerms, total: Tensor
    ) -> tuple[dict[str, float], Tensor, float]:
        """Loss terms (mean over ranks of local means), l0 and explained variance of the global
        batch, the global per-latent firing counts, and the divergence ratio sse / sum ||x||^2
        (see DIVERGENCE_RATIO); one all-reduce."""
        d_in = x.shape[-1]
        losses = torch.stack([total, terms.mse, terms.sparsity, terms.auxk]).double()
        sums = _reconstruction_sums(x, terms.x_hat)
        packed = torch.cat([losses / self.world_size, sums, terms.fired.double()])
        all_reduce_(packed)
        n = self.cfg.batch_tokens
        fired = packed[6 + d_in :]
        ratio, ev = _ratio_and_ev(packed[4 : 6 + d_in], n)
        keys = ("loss", "mse", "sparsity", "auxk")
        metrics = dict(zip(keys, packed[:4].tolist(), strict=True))
        metrics["l0"] = fired.sum().item() / n
        metrics["explained_variance"] = ev
        return metrics, fired.round().long().cpu(), ratio

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

    def _write_checkpoint(self, final: bool = False) -> None:
        """Write a checkpoint unless the weights have diverged: then warn, or at the end of the
        run raise DivergenceError (`final`)."""
        if final:
            self._raise_if_diverged()
        elif (diverged := self._diverged_now()) is not None:
            name, ratio, _ = diverged
            warnings.warn(
                f"no checkpoint written at step {self.state.step}: SAE {name!r} has diverged "
                f"(squared error {ratio:.3g} times the inputs' squared norm); the last "
                f"checkpoint is still {self.last_checkpoint}",
                CheckpointWarning,
                stacklevel=2,
            )
            return
        if self.rank == 0:
            self.state.stream_state = self._stream_state()
            write_checkpoint(self.run_dir, self.state)
            self.state.stream_state = None
        barrier()
        self.last_checkpoint = latest_checkpoint(self.run_dir)
        self.checkpoint_time = time.monotonic()

    def _raise_if_diverged(self) -> None:
        diverged = self._diverged_now()
        if diverged is not None:
            why = "with the final weights, which were not saved"
            raise DivergenceError(self.state.step, *diverged, self.last_checkpoint, why)

    def _finish(self) -> TrainResult:
        st = self.state
        if self.run_dir is None:
            self._raise_if_diverged()
        elif self.last_checkpoint is None or self.last_checkpoint.name != checkpoint_name(st.step):
            self._write_checkpoint(final=True)
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
