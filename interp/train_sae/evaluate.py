"""Held-out evaluation of a run's SAEs: reconstruction metrics and the LM's loss with each SAE
spliced in at its hook.

The reconstruction-only metrics live in `sae.metrics` / `sae.eval_stream`, the model-side ones
(cross-entropy, KL) in `interp.metrics`. Position 0 (BOS) keeps its clean activation in both the
spliced and the ablated run: SAEs are trained without BOS (its residual norm is an outlier), as
SAELens's evals exclude it.
"""

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Int
from torch import Tensor

from interp.capture.core import model_device
from interp.interventions import intervene, replace, store, zero_ablate
from interp.metrics import next_token_ce, next_token_kl
from interp.prefix import shareable_blocks, shared_prefix
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.source import eval_batches, heldout_start
from sae.eval_stream import ContextJackknife, EvalAccumulator, EvalMetrics
from sae.fsutil import dump_json
from sae.io import METRICS_FILENAME, load_metrics

SPLICE_POSITIONS = slice(1, None)
"""Positions whose activation is replaced: all but BOS."""

HEADLINE_METRICS = (
    "explained_variance",
    "ce_loss_recovered",
    "delta_lm_loss",
    "kl_div",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "cosine_similarity",
    "l2_ratio",
    "n_tokens",
)
"""The held-out metrics shown by the CLI table and the HTML report, in this order."""


def metric_text(metrics: dict[str, Any], key: str) -> str:
    """One held-out metric as shown in the CLI table and the HTML report: `0.9906 ± 0.0004` when
    the metric has a finite standard error (`<key>_se`), `n/a` when it is missing."""
    value = metrics.get(key)
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    se = metrics.get(f"{key}_se")
    return f"{value:.4f} ± {se:.4f}" if se is not None and math.isfinite(se) else f"{value:.4f}"


class LMLosses(NamedTuple):
    """Mean next-token cross-entropy (nats/token) of one batch, and KL(clean || spliced);
    `per_context` holds each context's token sums of the three losses [ctx, 3]."""

    ce_clean: float
    ce_spliced: float
    ce_zero: float
    kl: float
    n_tokens: int
    per_context: Tensor


def _splice(sae) -> Callable[[Tensor], Tensor]:
    def reconstruct(a: Tensor) -> Tensor:
        return sae(a.reshape(-1, a.shape[-1]).to(sae.W_enc.dtype)).reshape(a.shape).to(a.dtype)

    return reconstruct


def _losses(
    tokens: Tensor, clean: Tensor, ce_clean: Tensor, spliced: Tensor, zeroed: Tensor
) -> LMLosses:
    ce = [ce_clean, next_token_ce(spliced, tokens), next_token_ce(zeroed, tokens)]
    return LMLosses(
        *(c.mean().item() for c in ce),
        kl=next_token_kl(clean, spliced).mean().item(),
        n_tokens=tokens[:, 1:].numel(),
        per_context=torch.stack([c.double().sum(1) for c in ce], -1),
    )


class SAEEval(NamedTuple):
    metrics: EvalMetrics
    kl: float
    standard_errors: dict[str, float]
    """Jackknife standard errors over held-out contexts (`sae.eval_stream.ContextJackknife`)."""


class _Accumulator:
    """One SAE's running metrics: reconstruction, LM losses, KL and the jackknife."""

    def __init__(self, sae) -> None:
        self.sae = sae
        self.acc = EvalAccumulator(sae.cfg.d_in, sae.cfg.d_sae)
        self.jackknife = ContextJackknife()
        self.kl_sum, self.kl_tokens = 0.0, 0

    def update(self, x: Tensor, losses: LMLosses) -> None:
        x = x[:, SPLICE_POSITIONS].to(self.sae.W_enc.dtype)
        flat = x.reshape(-1, self.sae.cfg.d_in)
        acts = self.sae.encode(flat)
        x_hat = self.sae.decode(acts)
        self.acc.update(flat, x_hat, acts)
        ctx_tokens = torch.full((x.shape[0],), x.shape[1])
        self.jackknife.update(x, x_hat.reshape(x.shape), losses.per_context, ctx_tokens)
        self.acc.update_ce(losses.ce_clean, losses.ce_spliced, losses.ce_zero, losses.n_tokens)
        self.kl_sum += losses.kl * losses.n_tokens
        self.kl_tokens += losses.n_tokens

    def result(self) -> SAEEval:
        kl = self.kl_sum / max(self.kl_tokens, 1)
        return SAEEval(self.acc.compute(), kl, self.jackknife.standard_errors())


@torch.inference_mode()
def evaluate_saes(
    model,
    saes: Mapping[str, Any],
    token_batches: Iterable[Int[Tensor, "batch pos"]],
    branch: bool = True,
) -> dict[str, SAEEval]:
    """Every metric of each SAE (hook name -> SAE) on held-out token batches: reconstruction
    metrics over non-BOS positions, the LM losses with the SAE spliced in and with its hook
    zero-ablated (KL is the token-weighted mean of KL(clean || spliced),
    `interp.metrics.next_token_kl`), and the standard errors of EV, CE loss recovered and delta
    LM loss by the jackknife over contexts.

    The clean pass is shared: one forward pass per batch captures every hook, so N SAEs cost
    1 + 2N passes per batch, not 3N. With `branch` (on a TransformerBridge), the blocks before
    the earliest hook run once per batch and the spliced and ablated passes start after them
    (`interp.prefix.shared_prefix`): at blocks.12.hook_resid_post of a 16-block model, the two
    extra passes run 3 blocks instead of 16.
    """
    device = model_device(model)
    accs = {hook: _Accumulator(sae) for hook, sae in saes.items()}
    shared = shareable_blocks(list(saes)) if branch else 0
    for tokens in token_batches:
        tokens = tokens.to(device)
        captured: dict[str, Tensor] = {}
        with shared_prefix(model, shared) if shared else contextlib.nullcontext():
            with intervene(model, {hook: store(captured, hook) for hook in saes}):
                clean = model(tokens)
            ce_clean = next_token_ce(clean, tokens)
            for hook, sae in saes.items():
                with intervene(model, {hook: replace(_splice(sae), SPLICE_POSITIONS)}):
                    spliced = model(tokens)
                with intervene(model, {hook: zero_ablate(SPLICE_POSITIONS)}):
                    zeroed = model(tokens)
                losses = _losses(tokens, clean, ce_clean, spliced, zeroed)
                accs[hook].update(captured[hook], losses)
    return {hook: acc.result() for hook, acc in accs.items()}


def evaluate_sae(
    model,
    sae,
    hook_name: str,
    token_batches: Iterable[Int[Tensor, "batch pos"]],
    branch: bool = True,
) -> SAEEval:
    """`evaluate_saes` for one SAE at `hook_name`."""
    return evaluate_saes(model, {hook_name: sae}, token_batches, branch)[hook_name]


def evaluate_run(
    model: Any, cfg: TrainSAEConfig, saes: dict[str, Any], run_dir: Path
) -> dict[str, dict[str, Any]]:
    """Held-out metrics of each SAE, on the contexts after the ones trained on.

    Each SAE folder keeps one metrics.json (strict JSON: NaN and inf become null): the held-out
    metrics at the top level and, under "training", what the trainer recorded (steps, tokens
    seen, the last step's metrics).
    """
    skip = heldout_start(cfg)
    batches = eval_batches(model, cfg, skip)
    device = model_device(model)
    results = evaluate_saes(model, {hook: sae.to(device) for hook, sae in saes.items()}, batches)
    out = {}
    for hook, result in results.items():
        folder = run_dir / "saes" / hook
        training = load_metrics(folder) or {}
        metrics = {
            **result.metrics.scalars(),
            "kl_div": result.kl,
            **{f"{name}_se": se for name, se in result.standard_errors.items()},
            "hook_name": hook,
            "eval_contexts_start": skip,
        }
        dump_json(
            folder / METRICS_FILENAME, {**metrics, "training": training.get("training", training)}
        )
        out[hook] = metrics
    return out
