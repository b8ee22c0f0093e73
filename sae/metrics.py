"""SAE evaluation metrics as pure functions, each with its formula. Batches are [n, d] tensors;
E_n is the mean over the n rows (tokens); ||.|| is the L2 norm over d.

Shapes are annotated with jaxtyping and checked on entry: a wrong rank or x and x_hat of
different shapes raise a ValueError naming the shapes. `sae.eval_stream.EvalAccumulator`
computes the same quantities over many batches.
"""

import math
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor


def _check(name: str, *tensors: Tensor, ndim: int) -> None:
    """ValueError unless every tensor has `ndim` dims and all share one shape."""
    shapes = [tuple(t.shape) for t in tensors]
    if any(len(s) != ndim for s in shapes) or len(set(shapes)) != 1:
        expected = "[n, d]" if ndim == 2 else "[d_sae]"
        raise ValueError(f"{name} expects tensors of one shape {expected}, got {shapes}")


def l0(acts: Float[Tensor, "n d_sae"]) -> float:
    """L0 = E_n #{i : acts[n, i] != 0}, the mean number of active latents per token."""
    _check("l0", acts, ndim=2)
    return (acts != 0).sum(-1).double().mean().item()


def mse(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """MSE = E_n ||x_n - x_hat_n||^2 / d, the mean squared error per element."""
    _check("mse", x, x_hat, ndim=2)
    return (x.double() - x_hat.double()).pow(2).mean().item()


def _total_variance(x: Tensor) -> Tensor:
    x = x.double()
    return (x - x.mean(0)).pow(2).sum(-1).mean()


def normalized_mse(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """FVU = E_n ||x_n - x_hat_n||^2 / E_n ||x_n - mu||^2 with mu = E_n x_n (per dimension).

    The fraction of variance unexplained; 0 is perfect, 1 is as good as predicting the mean.
    """
    _check("normalized_mse", x, x_hat, ndim=2)
    err = (x.double() - x_hat.double()).pow(2).sum(-1).mean()
    return (err / _total_variance(x)).item()


def explained_variance(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """EV = 1 - E_n ||x_n - x_hat_n||^2 / E_n ||x_n - mu||^2 = 1 - FVU, mu = E_n x_n per dim."""
    return 1.0 - normalized_mse(x, x_hat)


def cosine_similarity(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """E_n <x_n, x_hat_n> / (||x_n|| ||x_hat_n||), with a norm clamped at 1e-12 for zero rows."""
    _check("cosine_similarity", x, x_hat, ndim=2)
    x, x_hat = x.double(), x_hat.double()
    num = (x * x_hat).sum(-1)
    den = x.norm(dim=-1).clamp_min(1e-12) * x_hat.norm(dim=-1).clamp_min(1e-12)
    return (num / den).mean().item()


def l2_ratio(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """E_n ||x_hat_n|| / ||x_n|| (rows with ||x_n|| = 0 use 1e-12); below 1 means shrinkage."""
    _check("l2_ratio", x, x_hat, ndim=2)
    x, x_hat = x.double(), x_hat.double()
    return (x_hat.norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-12)).mean().item()


def dead_fraction(freqs: Float[Tensor, " d_sae"], threshold: float = 0.0) -> float:
    """#{i : freq_i <= threshold} / d_sae, where freq_i is the fraction of tokens latent i fires on.

    threshold = 0 counts latents that never fired.
    """
    _check("dead_fraction", freqs, ndim=1)
    return (freqs <= threshold).double().mean().item()


def dense_fraction(freqs: Float[Tensor, " d_sae"], threshold: float = 0.1) -> float:
    """#{i : freq_i > threshold} / d_sae, latents firing on more than `threshold` of tokens."""
    _check("dense_fraction", freqs, ndim=1)
    return (freqs > threshold).double().mean().item()


def log_feature_density(freqs: Float[Tensor, " d_sae"], eps: float = 1e-10) -> Tensor:
    """log10(freq_i + eps) per latent; what SAELens stores in sparsity.safetensors."""
    _check("log_feature_density", freqs, ndim=1)
    return torch.log10(freqs.double() + eps).float()


class Histogram(NamedTuple):
    """counts[j] values fell in [edges[j], edges[j + 1]) (the last bin includes its right edge)."""

    counts: Tensor
    edges: Tensor


def feature_density_histogram(
    freqs: Float[Tensor, " d_sae"], bins: int = 50, low: float = -10.0, high: float = 0.0
) -> Histogram:
    """Histogram of log10(freq_i + 1e-10) over `bins` equal bins on [low, high].

    Never-firing latents land at -10, the left edge with the defaults; values outside
    [low, high] are clipped into the end bins so every latent is counted.
    """
    logs = log_feature_density(freqs).double().clamp(low, high)
    counts = torch.histc(logs, bins=bins, min=low, max=high).long()
    return Histogram(counts, torch.linspace(low, high, bins + 1, dtype=torch.float64))


def ce_loss_recovered(ce_clean: float, ce_spliced: float, ce_zero: float) -> float:
    """(ce_zero - ce_spliced) / (ce_zero - ce_clean): 1 when splicing the SAE in costs nothing,
    0 when it is as bad as zero-ablating the activation. Raises if ce_zero == ce_clean."""
    if ce_zero == ce_clean:
        raise ValueError(f"ce_loss_recovered is undefined when ce_zero == ce_clean ({ce_zero})")
    return (ce_zero - ce_spliced) / (ce_zero - ce_clean)


def delta_lm_loss(ce_clean: float, ce_spliced: float) -> float:
    """ce_spliced - ce_clean, the LM loss added by replacing the activation with the SAE's."""
    return ce_spliced - ce_clean


def jackknife_se(leave_one_out: Float[Tensor, " n"]) -> float:
    """Standard error from leave-one-out estimates theta_(i), i = 1..n:
    sqrt((n - 1) / n * sum_i (theta_(i) - mean_i theta_(i))^2) (Efron & Stein; for the sample mean
    it equals the classic s / sqrt(n)). NaN when n < 2."""
    n = leave_one_out.numel()
    if n < 2:
        return float("nan")
    t = leave_one_out.double()
    return math.sqrt((n - 1) / n * (t - t.mean()).pow(2).sum().item())
