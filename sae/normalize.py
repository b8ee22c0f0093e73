"""Input normalisation by one scalar, SAELens's "expected_average_only_in" convention.

The SAE trains on x * s with s = sqrt(d_in) / E||x||, so that E||x * s|| = sqrt(d_in) whatever
the layer's scale, and hyper-parameters (l1_coefficient, lr) transfer between layers and
models. When saved, s is folded into the weights (`SAE.fold_input_scale_`), so the saved SAE
reads raw activations: folded(x) == unfolded(x * s) / s.
"""

import copy
import math
from collections.abc import Iterable

import torch
from jaxtyping import Float
from torch import Tensor

from sae.base import SAE
from sae.distributed import all_reduce_


def estimate_norm_scaling_factor(batches: Iterable[Float[Tensor, "n d_in"]]) -> float:
    """s = sqrt(d_in) / mean_n ||x_n||_2, the mean over every token of every batch (and rank).

    Sums are taken in float64 so bf16/fp16 activations neither overflow nor lose precision.
    """
    total = torch.zeros(2, dtype=torch.float64)
    d_in = None
    for x in batches:
        d_in = x.shape[-1]
        norms = x.detach().reshape(-1, d_in).to(torch.float64).norm(dim=-1)
        total += torch.stack([norms.sum().cpu(), torch.tensor(float(norms.numel()))])
    if d_in is None:
        raise ValueError("estimate_norm_scaling_factor got no batches")
    norm_sum, count = all_reduce_(total).tolist()
    mean_norm = norm_sum / count
    if not mean_norm > 0 or not math.isfinite(mean_norm):
        raise ValueError(f"cannot normalise: the mean activation norm is {mean_norm}")
    return math.sqrt(d_in) / mean_norm


def folded_copy(sae: SAE, scale: float) -> SAE:
    """A copy of `sae` (trained on x * scale) that reads raw x; `sae` is left unchanged."""
    out = copy.deepcopy(sae)
    out.fold_input_scale_(scale)
    return out
