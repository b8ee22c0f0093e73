"""Sparse autoencoders: architectures, training over any activation stream, metrics, and
SAELens-format folders. Never imports `interp`; see docs/sae.md."""

from sae.base import SAE, LossTerms
from sae.config import SAEConfig, TrainConfig
from sae.io import load_sae, save_sae
from sae.registry import ARCHITECTURES, build_sae
from sae.training import NonFiniteLossError, TrainResult, resume, train

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "LossTerms",
    "NonFiniteLossError",
    "SAEConfig",
    "TrainConfig",
    "TrainResult",
    "build_sae",
    "load_sae",
    "resume",
    "save_sae",
    "train",
]
