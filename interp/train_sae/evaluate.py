"""Held-out evaluation of a run's SAEs: reconstruction metrics and the LM's loss with each SAE
spliced in at its hook.

The reconstruction-only metrics live in `sae.metrics` / `sae.eval_stream`, the model-side ones
(cross-entropy, KL) in `interp.metrics`. Position 0 (BOS) keeps its clean activation in both the
spliced and the ablated run: SAEs are trained without BOS (its residual norm is an outlier), as
SAELens's evals exclude it.
"""

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Int
from torch import Tensor

from interp.capture.core import model_device
from interp.interventions import intervene, replace, store, zero_ablate
from interp.metrics import next_token_ce, next_token_kl
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.source import eval_batches, heldout_start
from sae.eval_stream import EvalAccumulator, EvalMetrics
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


class LMLosses(NamedTuple):
    """Mean next-token cross-entropy (nats/token) of one batch, and KL(clean || spliced)."""

    ce_clean: float
    ce_spliced: float
    ce_zero: float
    kl: float
    n_tokens: int


def _splice(sae) -> Callable[[Tensor], Tensor]:
    def reconstruct(a: Tensor) -> Tensor:
        return sae(a.reshape(-1, a.shape[-1]).to(sae.W_enc.dtype)).reshape(a.shape).to(a.dtype)

    return reconstruct


def _three_runs(model, tokens: Tensor, hook_name: str, sae) -> tuple[Tensor, LMLosses]:
    """The clean activation at `hook_name` and the LM losses, from three forward passes: clean,
    with `sae` spliced in, and with the hook zero-ablated."""
    captured: dict[str, Tensor] = {}
    with intervene(model, {hook_name: store(captured, "x")}):
        clean = model(tokens)
    with intervene(model, {hook_name: replace(_splice(sae), SPLICE_POSITIONS)}):
        spliced = model(tokens)
    with intervene(model, {hook_name: zero_ablate(SPLICE_POSITIONS)}):
        zeroed = model(tokens)
    losses = LMLosses(
        ce_clean=next_token_ce(clean, tokens).mean().item(),
        ce_spliced=next_token_ce(spliced, tokens).mean().item(),
        ce_zero=next_token_ce(zeroed, tokens).mean().item(),
        kl=next_token_kl(clean, spliced).mean().item(),
        n_tokens=tokens[:, 1:].numel(),
    )
    return captured["x"], losses


class SAEEval(NamedTuple):
    metrics: EvalMetrics
    kl: float


@torch.inference_mode()
def evaluate_sae(
    model, sae, hook_name: str, token_batches: Iterable[Int[Tensor, "batch pos"]]
) -> SAEEval:
    """Every metric of one SAE on held-out token batches: reconstruction metrics over non-BOS
    positions, plus the LM losses with the SAE spliced in (KL is the token-weighted mean of
    KL(clean || spliced), `interp.metrics.next_token_kl`)."""
    acc = EvalAccumulator(sae.cfg.d_in, sae.cfg.d_sae)
    kl_sum, kl_tokens = 0.0, 0
    device = model_device(model)
    for tokens in token_batches:
        x, losses = _three_runs(model, tokens.to(device), hook_name, sae)
        x = x[:, SPLICE_POSITIONS].reshape(-1, sae.cfg.d_in).to(sae.W_enc.dtype)
        acts = sae.encode(x)
        acc.update(x, sae.decode(acts), acts)
        acc.update_ce(losses.ce_clean, losses.ce_spliced, losses.ce_zero, losses.n_tokens)
        kl_sum += losses.kl * losses.n_tokens
        kl_tokens += losses.n_tokens
    return SAEEval(acc.compute(), kl_sum / max(kl_tokens, 1))


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
    out = {}
    for hook, sae in saes.items():
        result = evaluate_sae(model, sae.to(model_device(model)), hook, batches)
        folder = run_dir / "saes" / hook
        training = load_metrics(folder) or {}
        metrics = {
            **result.metrics.scalars(),
            "kl_div": result.kl,
            "hook_name": hook,
            "eval_contexts_start": skip,
        }
        dump_json(
            folder / METRICS_FILENAME, {**metrics, "training": training.get("training", training)}
        )
        out[hook] = metrics
    return out
