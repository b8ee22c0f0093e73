"""Learning-rate and sparsity-coefficient schedules, pure functions of the step."""

import math

from sae.config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr for optimiser step `step` (0-based).

    Linear warm-up (step + 1) / W over the first W = lr_warmup_steps steps, then 1, then a linear
    decay over the last D = ceil(lr_decay_fraction * total_steps) steps reaching 1 / D on the
    final step (so no step is wasted at lr 0).
    """
    total = cfg.total_steps
    decay = math.ceil(cfg.lr_decay_fraction * total)
    factor = 1.0
    if step < cfg.warmup_steps:
        factor = (step + 1) / cfg.warmup_steps
    if decay > 0 and step >= total - decay:
        factor = min(factor, (total - step) / decay)
    return factor


def sparsity_scale(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the sparsity penalty: (step + 1) / S over the first S steps, then 1."""
    if step < cfg.sparsity_steps:
        return (step + 1) / cfg.sparsity_steps
    return 1.0
