"""`PatchResult`: the scores of one grid, with labelled axes, its baselines and its ranking."""

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.patching.metric import normalise


@dataclass(frozen=True, eq=False)
class PatchResult:
    """Metric values per cell of a grid.

    `values[cell]` is the metric of the run with that cell patched (exact patching, ablation) or
    its first-order estimate (attribution, IG: `start + estimated change`). `start` is the run
    the patches are applied to: the corrupt run for patching, the clean run for ablation.
    `labels[axis]` names each index of an axis ('L3', '5: Mary', 'H2').
    """

    values: Float[Tensor, "*grid"]
    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    grid: str
    method: str
    metric: str
    clean: float
    corrupt: float
    start: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def effect(self) -> Float[Tensor, "*grid"]:
        """values - start: the change each patch makes."""
        return self.values - self.start

    @property
    def normalised(self) -> Float[Tensor, "*grid"]:
        """(values - corrupt) / (clean - corrupt): 0 is the corrupt run, 1 the clean run."""
        return normalise(self.values, self.clean, self.corrupt)

    def cell_label(self, index: tuple[int, ...]) -> str:
        return " ".join(self.labels[a][i] for a, i in zip(self.axes, index, strict=True))

    def ranking(self, by_abs: bool = True) -> list[tuple[tuple[int, ...], float]]:
        """(cell index, effect) from the largest effect down (|effect| when `by_abs`)."""
        eff = self.effect.flatten()
        key = eff.abs() if by_abs else eff
        order = torch.argsort(key, descending=True, stable=True)
        shape = tuple(self.values.shape)
        return [
            (tuple(int(i) for i in torch.unravel_index(o, shape)), float(eff[o])) for o in order
        ]

    def top(self, k: int = 10, by_abs: bool = True) -> list[tuple[str, float]]:
        """The k cells with the largest effect, as (label, effect)."""
        return [(self.cell_label(i), e) for i, e in self.ranking(by_abs)[:k]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: axes, labels, values, effects and baselines."""
        return {
            "grid": self.grid,
            "method": self.method,
            "metric": self.metric,
            "axes": list(self.axes),
            "labels": self.labels,
            "shape": list(self.values.shape),
            "values": self.values.tolist(),
            "clean": self.clean,
            "corrupt": self.corrupt,
            "start": self.start,
            "meta": self.meta,
        }


def axis_labels(axes: tuple[str, ...], pos_labels: list[str], n_layers: int, n_heads: int) -> dict:
    names = {
        "layer": [f"L{i}" for i in range(n_layers)],
        "pos": pos_labels,
        "head": [f"H{i}" for i in range(n_heads)],
    }
    return {a: names[a] for a in axes}
