"""Architecture name -> SAE class. The CLI's `--arch` choices are `sorted(ARCHITECTURES)`."""

import torch

from sae.base import SAE
from sae.batchtopk import BatchTopKSAE
from sae.config import SAEConfig
from sae.jumprelu import JumpReLUSAE
from sae.relu import ReLUSAE
from sae.topk import TopKSAE

ARCHITECTURES: dict[str, type[SAE]] = {
    "relu": ReLUSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
}


def build_sae(cfg: SAEConfig, *, seed: int | None = None) -> SAE:
    """A freshly initialised SAE of `cfg.arch`; `seed` makes the initialisation reproducible."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return ARCHITECTURES[cfg.arch](cfg, generator=generator)
