"""Model-side SAE evaluation: the LM's loss with an SAE spliced in at its hook.

The reconstruction-only metrics live in `sae.metrics` / `sae.eval_stream`; this module adds what
needs the model. Position 0 (BOS) keeps its clean activation in both the spliced and the ablated
run: SAEs are trained without BOS (its residual norm is an outlier), as SAELens's evals exclude it.
"""

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from jaxtyping import Int
from torch import Tensor

from interp.interventions import intervene, replace, store, zero_ablate
from sae.eval_stream import EvalAccumulator, EvalMetrics

SPLICE_POSITIONS = slice(1, None)
"""Positions whose activation is replaced: all but BOS."""


class LMLosses(NamedTuple):
    """Mean next-token cross-entropy (nats/token) of one batch, and KL(clean || spliced)."""

    ce_clean: float
    ce_spliced: float
    ce_zero: float
    kl: float
    n_tokens: int


def next_token_ce(logits: Tensor, tokens: Int[Tensor, "batch pos"]) -> Tensor:
    """Per-token CE [batch, pos-1]: -log p(tokens[:, t+1] | tokens[:, :t+1])."""
    logp = logits[:, :-1].float().log_softmax(-1)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def _splice(sae) -> Callable[[Tensor], Tensor]:
    def reconstruct(a: Tensor) -> Tensor:
        return sae(a.reshape(-1, a.shape[-1]).to(sae.W_enc.dtype)).reshape(a.shape).to(a.dtype)

    return reconstruct


@torch.inference_mode()
def lm_losses(model, tokens: Int[Tensor, "batch pos"], hook_name: str, sae) -> LMLosses:
    """CE with the clean model, with `sae` spliced in at `hook_name`, and with it zero-ablated.

    KL is the mean over tokens of sum_v p_clean(v) (log p_clean(v) - log p_spliced(v)).
    """
    return _three_runs(model, tokens, hook_name, sae)[1]


def _three_runs(model, tokens: Tensor, hook_name: str, sae) -> tuple[Tensor, LMLosses]:
    """The clean activation at `hook_name` and the LM losses, from three forward passes."""
    captured: dict[str, Tensor] = {}
    with intervene(model, {hook_name: store(captured, "x")}):
        clean = model(tokens)
    with intervene(model, {hook_name: replace(_splice(sae), SPLICE_POSITIONS)}):
        spliced = model(tokens)
    with intervene(model, {hook_name: zero_ablate(SPLICE_POSITIONS)}):
        zeroed = model(tokens)
    logp_clean = clean[:, :-1].float().log_softmax(-1)
    logp_spliced = spliced[:, :-1].float().log_softmax(-1)
    kl = (logp_clean.exp() * (logp_clean - logp_spliced)).sum(-1).mean().item()
    losses = LMLosses(
        ce_clean=next_token_ce(clean, tokens).mean().item(),
        ce_spliced=next_token_ce(spliced, tokens).mean().item(),
        ce_zero=next_token_ce(zeroed, tokens).mean().item(),
        kl=kl,
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
    positions, plus the LM losses with the SAE spliced in."""
    acc = EvalAccumulator(sae.cfg.d_in, sae.cfg.d_sae)
    kl_sum, kl_tokens = 0.0, 0
    device = next(model.parameters()).device
    for tokens in token_batches:
        x, losses = _three_runs(model, tokens.to(device), hook_name, sae)
        x = x[:, SPLICE_POSITIONS].reshape(-1, sae.cfg.d_in).to(sae.W_enc.dtype)
        acts = sae.encode(x)
        acc.update(x, sae.decode(acts), acts)
        acc.update_ce(losses.ce_clean, losses.ce_spliced, losses.ce_zero, losses.n_tokens)
        kl_sum += losses.kl * losses.n_tokens
        kl_tokens += losses.n_tokens
    return SAEEval(acc.compute(), kl_sum / max(kl_tokens, 1))
