"""Sparse autoencoders: architectures, training over any activation stream, metrics, and
SAELens-format folders. Never imports `interp`; see docs/sae.md.

The names below load on first use, so `import sae.config` (the configs, which the command line
reads for its options) does not import torch.
"""

import importlib

_EXPORTS = {
    "ARCHITECTURES": "sae.registry",
    "SAE": "sae.base",
    "CheckpointError": "sae.errors",
    "CheckpointWarning": "sae.errors",
    "ConfigError": "sae.errors",
    "DivergenceError": "sae.errors",
    "FileFormatError": "sae.errors",
    "LossTerms": "sae.base",
    "NonFiniteLossError": "sae.errors",
    "SAEConfig": "sae.config",
    "SAEError": "sae.errors",
    "TrainConfig": "sae.config",
    "TrainResult": "sae.training",
    "build_sae": "sae.registry",
    "load_sae": "sae.io",
    "resume": "sae.training",
    "save_sae": "sae.io",
    "train": "sae.training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
