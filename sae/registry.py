"""Architecture name -> SAE class. The CLI's `--arch` choices are `sorted(ARCHITECTURES)`.

The names are known without importing the architectures (so a config validates, and `--help`
answers, without importing torch); a class is imported when it is first looked up.
"""

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sae.base import SAE
    from sae.config import SAEConfig


class _Architectures(Mapping[str, "type[SAE]"]):
    """name -> class, read-only, importing each class's module on first access."""

    def __init__(self, where: dict[str, str]) -> None:
        self._where = where

    def __getitem__(self, name: str) -> "type[SAE]":
        module, _, cls = self._where[name].partition(":")
        return getattr(importlib.import_module(module), cls)

    def __contains__(self, name: object) -> bool:  # Mapping's would import the class
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


ARCHITECTURES: Mapping[str, "type[SAE]"] = _Architectures(
    {
        "relu": "sae.relu:ReLUSAE",
        "topk": "sae.topk:TopKSAE",
        "batchtopk": "sae.batchtopk:BatchTopKSAE",
        "jumprelu": "sae.jumprelu:JumpReLUSAE",
    }
)


def build_sae(cfg: "SAEConfig", *, seed: int | None = None) -> "SAE":
    """A freshly initialised SAE of `cfg.arch`; `seed` makes the initialisation reproducible."""
    import torch

    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return ARCHITECTURES[cfg.arch](cfg, generator=generator)
