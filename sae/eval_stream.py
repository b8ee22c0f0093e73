"""Streaming evaluation: the metrics of `sae.metrics` over many batches without keeping them.

Each metric equals its `sae.metrics` function applied to the concatenation of all batches. The
total variance E_n ||x_n - mu||^2 is merged batch by batch with Chan et al.'s parallel formula
(per-dimension means and a running sum of squared deviations, in float64), so it stays accurate
when the mean is large compared with the spread.
"""

from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from sae import metrics


class EvalMetrics(NamedTuple):
    """Metrics over every token seen. CE fields are None unless `update_ce` was called."""

    n_tokens: int
    l0: float
    mse: float
    normalized_mse: float
    explained_variance: float
    cosine_similarity: float
    l2_ratio: float
    dead_fraction: float
    dense_fraction: float
    feature_density: Tensor
    ce_clean: float | None
    ce_spliced: float | None
    ce_zero: float | None
    ce_loss_recovered: float | None
    delta_lm_loss: float | None

    def scalars(self) -> dict[str, float | int | None]:
        """Every field but `feature_density`, for metrics.json."""
        return {k: v for k, v in self._asdict().items() if k != "feature_density"}


class EvalAccumulator:
    """Accumulates (x, x_hat, acts) batches; `compute()` returns `EvalMetrics`."""

    def __init__(
        self, d_in: int, d_sae: int, dead_threshold: float = 0.0, dense_threshold: float = 0.1
    ) -> None:
        self.d_in, self.d_sae = d_in, d_sae
        self.dead_threshold, self.dense_threshold = dead_threshold, dense_threshold
        self.n = 0
        self.mean = torch.zeros(d_in, dtype=torch.float64)
        self.m2 = 0.0  # sum over tokens of ||x_n - mean||^2
        self.sums = {"sq_err": 0.0, "cos": 0.0, "ratio": 0.0, "l0": 0.0}
        self.fired = torch.zeros(d_sae, dtype=torch.float64)
        self.ce = torch.zeros(3, dtype=torch.float64)  # token-weighted sums: clean, spliced, zero
        self.ce_tokens = 0

    @torch.no_grad()
    def update(
        self,
        x: Float[Tensor, "n d_in"],
        x_hat: Float[Tensor, "n d_in"],
        acts: Float[Tensor, "n d_sae"],
    ) -> None:
        """Add one batch of inputs, reconstructions and latent activations."""
        if (
            x.shape != x_hat.shape
            or x.shape[-1] != self.d_in
            or acts.shape
            != (
                x.shape[0],
                self.d_sae,
            )
        ):
            raise ValueError(
                f"expected x, x_hat [n, {self.d_in}] and acts [n, {self.d_sae}], got "
                f"{tuple(x.shape)}, {tuple(x_hat.shape)}, {tuple(acts.shape)}"
            )
        n_b = x.shape[0]
        x, x_hat = x.double().cpu(), x_hat.double().cpu()
        self._merge_variance(x)
        self.sums["sq_err"] += (x - x_hat).pow(2).sum().item()
        self.sums["cos"] += metrics.cosine_similarity(x, x_hat) * n_b
        self.sums["ratio"] += metrics.l2_ratio(x, x_hat) * n_b
        active = (acts != 0).cpu()
        self.sums["l0"] += active.sum().item()
        self.fired += active.sum(0).double()

    def _merge_variance(self, x: Tensor) -> None:
        n_b = x.shape[0]
        mean_b = x.mean(0)
        m2_b = (x - mean_b).pow(2).sum().item()
        total = self.n + n_b
        delta = mean_b - self.mean
        self.m2 += m2_b + delta.pow(2).sum().item() * self.n * n_b / total
        self.mean += delta * (n_b / total)
        self.n = total

    def update_ce(self, ce_clean: float, ce_spliced: float, ce_zero: float, n_tokens: int) -> None:
        """Add mean LM losses (clean, SAE spliced in, activation zeroed) over n_tokens tokens."""
        self.ce += torch.tensor([ce_clean, ce_spliced, ce_zero], dtype=torch.float64) * n_tokens
        self.ce_tokens += n_tokens

    def compute(self) -> EvalMetrics:
        """The metrics so far; raises if no batch was added."""
        if self.n == 0:
            raise ValueError("EvalAccumulator.compute() called before any update()")
        n = self.n
        fvu = self.sums["sq_err"] / self.m2 if self.m2 > 0 else float("nan")
        freqs = (self.fired / n).float()
        ce = self._ce()
        return EvalMetrics(
            n_tokens=n,
            l0=self.sums["l0"] / n,
            mse=self.sums["sq_err"] / (n * self.d_in),
            normalized_mse=fvu,
            explained_variance=1.0 - fvu,
            cosine_similarity=self.sums["cos"] / n,
            l2_ratio=self.sums["ratio"] / n,
            dead_fraction=metrics.dead_fraction(freqs, self.dead_threshold),
            dense_fraction=metrics.dense_fraction(freqs, self.dense_threshold),
            feature_density=freqs,
            **ce,
        )

    def _ce(self) -> dict[str, float | None]:
        keys = ("ce_clean", "ce_spliced", "ce_zero", "ce_loss_recovered", "delta_lm_loss")
        if self.ce_tokens == 0:
            return dict.fromkeys(keys)
        clean, spliced, zero = (self.ce / self.ce_tokens).tolist()
        recovered = metrics.ce_loss_recovered(clean, spliced, zero) if zero != clean else None
        values = (clean, spliced, zero, recovered, metrics.delta_lm_loss(clean, spliced))
        return dict(zip(keys, values, strict=True))


class ContextJackknife:
    """Standard errors of explained variance, CE loss recovered and delta LM loss, by the
    jackknife over contexts (a context is the unit: its tokens are not independent of each other).

    Per context it keeps the sufficient statistics (token count, sum of squared errors, sum of x,
    sum of ||x||^2, and the token sums of the three LM losses), so that each leave-one-context-out
    estimate is exact: `standard_errors()` recomputes every metric with one context left out, for
    every context, and passes them to `sae.metrics.jackknife_se`.
    """

    def __init__(self) -> None:
        self.rows: list[
            Tensor
        ] = []  # per context: [n, sq_err, sum ||x||^2, ce_clean, ce_spliced, ce_zero, n_ce]
        self.sums: list[Tensor] = []  # per context: sum of x, [d_in]

    @torch.no_grad()
    def update(
        self,
        x: Float[Tensor, "ctx pos d_in"],
        x_hat: Float[Tensor, "ctx pos d_in"],
        ce: Float[Tensor, "ctx 3"] | None = None,
        ce_tokens: Tensor | None = None,
    ) -> None:
        """Add contexts: their activations and reconstructions and, optionally, the token sums of
        the clean, spliced and zero-ablated LM losses with their token counts."""
        x, x_hat = x.double().cpu(), x_hat.double().cpu()
        n_ctx, pos = x.shape[:2]
        ce = torch.zeros(n_ctx, 3) if ce is None else ce
        ce_tokens = torch.zeros(n_ctx) if ce_tokens is None else ce_tokens
        row = torch.stack(
            [
                torch.full((n_ctx,), float(pos), dtype=torch.float64),
                (x - x_hat).pow(2).sum((1, 2)),
                x.pow(2).sum((1, 2)),
                *ce.double().cpu().unbind(-1),
                ce_tokens.double().cpu(),
            ],
            -1,
        )
        self.rows.append(row)
        self.sums.append(x.sum(1))

    def standard_errors(self) -> dict[str, float]:
        """{"explained_variance", "ce_loss_recovered", "delta_lm_loss"} -> jackknife SE (NaN with
        fewer than two contexts, or without LM losses for the CE ones)."""
        rows, sums = torch.cat(self.rows), torch.cat(self.sums)
        rest, rest_sum = rows.sum(0) - rows, sums.sum(0) - sums
        n, sq_err, sxx = rest[:, 0], rest[:, 1], rest[:, 2]
        tss = sxx - rest_sum.pow(2).sum(-1) / n
        out = {"explained_variance": metrics.jackknife_se(1.0 - sq_err / tss)}
        ce_n = rest[:, 6]
        if bool((ce_n > 0).all()):
            clean, spliced, zero = (rest[:, 3:6] / ce_n[:, None]).unbind(-1)
            out["ce_loss_recovered"] = metrics.jackknife_se((zero - spliced) / (zero - clean))
            out["delta_lm_loss"] = metrics.jackknife_se(spliced - clean)
        else:
            out["ce_loss_recovered"] = out["delta_lm_loss"] = float("nan")
        return out
