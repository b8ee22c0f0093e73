"""Figures with their sample size and a 95% confidence interval.

- A rate (k successes in n trials) gets the Wilson score interval:
  centre = (p + z²/2n) / (1 + z²/n), half-width = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²),
  with p = k/n and z = 1.96 for 95%. Unlike p ± z sqrt(p(1-p)/n) it stays inside [0, 1] and is
  not empty at p = 0 or 1 (Newcombe 1998, method 3).
- A mean gets the percentile bootstrap: the 2.5% and 97.5% quantiles of the means of 2,000
  resamples drawn with replacement (seeded, so a report is reproducible). A difference of two
  independent means resamples each group on its own.
"""

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch

Method = Literal["wilson", "bootstrap"]
Z95 = 1.959963984540054
"""The standard normal's 97.5% quantile."""
RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95% interval [low, high], the number of items `n` it was measured on,
    and the interval's method. `value` is NaN (and so are the bounds) when n is 0."""

    value: float
    low: float
    high: float
    n: int
    method: Method

    def overlaps(self, other: "Estimate") -> bool:
        """Whether the two intervals share a point (a rough test: no overlap means a difference
        at well below the 5% level; overlap does not prove equality)."""
        return self.low <= other.high and other.low <= self.high

    def to_dict(self) -> dict:
        return asdict(self)


def wilson(k: int, n: int, z: float = Z95) -> Estimate:
    """The rate k/n with its Wilson score interval (formula in the module docstring)."""
    if not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "wilson")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At k = 0 (k = n) the bound is 0 (1) exactly; round-off would leave it a hair inside.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(p, low, high, n, "wilson")


def rate(hits: list[bool] | torch.Tensor) -> Estimate:
    """The share of true items with its Wilson interval."""
    hits = torch.as_tensor(hits, dtype=torch.bool)
    return wilson(int(hits.sum()), hits.numel())


def _resampled_means(values: torch.Tensor, resamples: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(0, len(values), (resamples, len(values)), generator=gen)
    return values[idx].mean(1)


def _percentiles(means: torch.Tensor) -> tuple[float, float]:
    q = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype))
    return q[0].item(), q[1].item()


def bootstrap_mean(
    values: list[float] | torch.Tensor, resamples: int = RESAMPLES, seed: int = 0
) -> Estimate:
    """The mean of `values` with its percentile-bootstrap 95% interval."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if x.numel() == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "bootstrap")
    means = _resampled_means(x, resamples, torch.Generator().manual_seed(seed))
    low, high = _percentiles(means)
    return Estimate(x.mean().item(), low, high, x.numel(), "bootstrap")


def bootstrap_diff(
    a: list[float] | torch.Tensor,
    b: list[float] | torch.Tensor,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """mean(a) - mean(b) of two independent groups, each resampled on its own; n = len(a) +
    len(b)."""
    xa = torch.as_tensor(a, dtype=torch.float64).flatten()
    xb = torch.as_tensor(b, dtype=torch.float64).flatten()
    if xa.numel() == 0 or xb.numel() == 0:
        return Estimate(math.nan, math.nan, math.nan, xa.numel() + xb.numel(), "bootstrap")
    gen = torch.Generator().manual_seed(seed)
    diffs = _resampled_means(xa, resamples, gen) - _resampled_means(xb, resamples, gen)
    low, high = _percentiles(diffs)
    return Estimate((xa.mean() - xb.mean()).item(), low, high, xa.numel() + xb.numel(), "bootstrap")
