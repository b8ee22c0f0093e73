"""What the SAE's weights say about each latent, without data: its logit effects (the decoder
direction read out through the model's final norm and unembedding) and its nearest latents by
decoder cosine. Both are computed in chunks of latents, so no `[d_sae, vocab]` or
`[d_sae, d_sae]` matrix is ever held whole."""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.errors import InterpError

FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "norm_f", "final_norm")
"""Attribute names of the final norm on a HuggingFace base model (Llama/Gemma/Qwen, GPT-2, ...)."""
LOGIT_BINS = 30


@dataclass
class LogitEffects:
    """Per latent: the `n` most promoted and most suppressed tokens and a histogram of the
    effect on every token (`LOGIT_BINS` equal-width bins from its min to its max)."""

    top_ids: Int[Tensor, "d_sae n"]
    top_values: Float[Tensor, "d_sae n"]
    bottom_ids: Int[Tensor, "d_sae n"]
    bottom_values: Float[Tensor, "d_sae n"]
    hist_counts: Int[Tensor, "d_sae bins"]
    hist_edges: Float[Tensor, "d_sae edges"]


@dataclass
class Neighbours:
    """Per latent: the `n` other latents whose decoder directions are closest by cosine."""

    ids: Int[Tensor, "d_sae n"]
    cosine: Float[Tensor, "d_sae n"]


def final_norm(model: Any) -> nn.Module | None:
    """The final norm of a TransformerBridge's HuggingFace model (None when it has none)."""
    hf = getattr(model, "original_model", None)
    base = getattr(hf, "base_model", None) if hf is not None else None
    for name in FINAL_NORMS:
        module = getattr(base, name, None) if base is not None else None
        if isinstance(module, nn.Module):
            return module
    return None


def unembedding(model: Any) -> Float[Tensor, "d_model vocab"]:
    """W_U of the model: the HuggingFace output embedding, else TransformerLens's `W_U`."""
    hf = getattr(model, "original_model", None)
    if hf is not None and hf.get_output_embeddings() is not None:
        return hf.get_output_embeddings().weight.detach().T
    if hasattr(model, "W_U"):
        return model.W_U.detach()
    raise InterpError(f"cannot find the unembedding of a {type(model).__name__}")


def readout_directions(
    directions: Float[Tensor, "n d_model"], norm: nn.Module | None
) -> Float[Tensor, "n d_model"]:
    """`directions` as the final norm passes them on: norm(d) - norm(0). For RMSNorm this is
    d / rms(d) * weight; for LayerNorm, the centred d scaled and times weight (its bias, the same
    for every direction, is removed); with no norm, d itself."""
    if norm is None:
        return directions
    with torch.no_grad():
        zero = torch.zeros_like(directions[:1])
        return norm(directions) - norm(zero)


def logit_effects(
    W_dec: Float[Tensor, "d_sae d_model"], model: Any, n: int = 10, chunk: int = 512
) -> LogitEffects:
    """Top and bottom `n` tokens of W_dec · W_U (through the final norm) per latent, and the
    histogram of all its token effects."""
    norm, W_U = final_norm(model), unembedding(model)
    parts: list[tuple[Tensor, ...]] = []
    for start in range(0, W_dec.shape[0], chunk):
        rows = W_dec[start : start + chunk].to(W_U.device, W_U.dtype)
        eff = (readout_directions(rows, norm) @ W_U).float()
        top, bottom = eff.topk(n, dim=1), eff.topk(n, dim=1, largest=False)
        lo, hi = eff.min(dim=1).values, eff.max(dim=1).values
        steps = torch.linspace(0, 1, LOGIT_BINS + 1, device=eff.device)
        edges = lo[:, None] + (hi - lo)[:, None] * steps
        counts = _row_histogram(eff, lo, hi)
        parts.append((top.indices, top.values, bottom.indices, bottom.values, counts, edges))
    return LogitEffects(*(torch.cat([p[i] for p in parts]).cpu() for i in range(6)))


def _row_histogram(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Counts of each row of `x` in `LOGIT_BINS` equal bins from lo to hi (hi in the last)."""
    width = (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)
    idx = ((x - lo[:, None]) / width[:, None] * LOGIT_BINS).long().clamp(0, LOGIT_BINS - 1)
    offsets = torch.arange(x.shape[0], device=x.device)[:, None] * LOGIT_BINS
    counts = torch.bincount((idx + offsets).reshape(-1), minlength=x.shape[0] * LOGIT_BINS)
    return counts.view(x.shape[0], LOGIT_BINS)


def decoder_neighbours(
    W_dec: Float[Tensor, "d_sae d_model"], n: int = 5, chunk: int = 1024
) -> Neighbours:
    """The `n` latents with the largest decoder cosine to each latent (itself left out)."""
    unit = torch.nn.functional.normalize(W_dec.detach().float(), dim=1)
    n = min(n, unit.shape[0] - 1)
    ids, cos = [], []
    for start in range(0, unit.shape[0], chunk):
        sim = unit[start : start + chunk] @ unit.T
        rows = torch.arange(sim.shape[0], device=sim.device)
        sim[rows, rows + start] = -torch.inf
        best = sim.topk(n, dim=1)
        ids.append(best.indices)
        cos.append(best.values)
    return Neighbours(torch.cat(ids).cpu(), torch.cat(cos).cpu())
