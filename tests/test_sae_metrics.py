"""Metrics against values computed by hand, and the streaming accumulator against the
one-shot functions on the concatenated batches."""

import math

import pytest
import torch

from sae import metrics
from sae.eval_stream import EvalAccumulator

# Hand-worked example: x = [[1, 0], [3, 2]], x_hat = [[1, 1], [2, 2]].
X = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
X_HAT = torch.tensor([[1.0, 1.0], [2.0, 2.0]])


def test_reconstruction_metrics_by_hand():
    # Errors per row: ||(0,-1)||^2 = 1, ||(1,0)||^2 = 1. Per element: 2 / 4.
    assert metrics.mse(X, X_HAT) == pytest.approx(0.5)
    # mu = (2, 1); ||x - mu||^2 = 2 for both rows, so FVU = 1 / 2 and EV = 1 / 2.
    assert metrics.normalized_mse(X, X_HAT) == pytest.approx(0.5)
    assert metrics.explained_variance(X, X_HAT) == pytest.approx(0.5)
    # cos: 1 / sqrt(2) and 10 / sqrt(13 * 8).
    expected_cos = (1 / math.sqrt(2) + 10 / math.sqrt(104)) / 2
    assert metrics.cosine_similarity(X, X_HAT) == pytest.approx(expected_cos)
    # ||x_hat|| / ||x||: sqrt(2) / 1 and sqrt(8) / sqrt(13).
    assert metrics.l2_ratio(X, X_HAT) == pytest.approx((math.sqrt(2) + math.sqrt(8 / 13)) / 2)


def test_perfect_and_mean_reconstructions():
    assert metrics.explained_variance(X, X) == 1.0
    mean = X.mean(0).expand_as(X)
    assert metrics.explained_variance(X, mean) == pytest.approx(0.0)


def test_l0_by_hand():
    acts = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, -3.0]])
    assert metrics.l0(acts) == pytest.approx(1.5)


def test_dead_and_dense_fractions():
    freqs = torch.tensor([0.0, 0.001, 0.2, 0.5])
    assert metrics.dead_fraction(freqs) == 0.25
    assert metrics.dead_fraction(freqs, threshold=0.001) == 0.5
    assert metrics.dense_fraction(freqs, threshold=0.1) == 0.5


def test_feature_density_histogram():
    freqs = torch.tensor([0.0, 1e-5, 1e-3, 1.0])
    hist = metrics.feature_density_histogram(freqs, bins=10, low=-10.0, high=0.0)
    # log10(freq + 1e-10): -10, ~-5.0 (just above), ~-3.0, ~0 -> bins 0, 5, 7, 9.
    assert hist.counts.tolist() == [1, 0, 0, 0, 0, 1, 0, 1, 0, 1]
    assert hist.edges[0] == -10 and hist.edges[-1] == 0 and len(hist.edges) == 11
    assert metrics.log_feature_density(freqs)[0].item() == pytest.approx(-10.0)


def test_ce_formulas():
    assert metrics.ce_loss_recovered(2.0, 2.5, 6.0) == pytest.approx(0.875)
    assert metrics.ce_loss_recovered(2.0, 2.0, 6.0) == 1.0
    assert metrics.ce_loss_recovered(2.0, 6.0, 6.0) == 0.0
    assert metrics.delta_lm_loss(2.0, 2.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="undefined"):
        metrics.ce_loss_recovered(2.0, 2.5, 2.0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"mse expects .*\(2, 2\), \(2, 1\)"):
        metrics.mse(X, X_HAT[:, :1])
    with pytest.raises(ValueError, match="normalized_mse"):
        metrics.explained_variance(X, X_HAT[:1])
    with pytest.raises(ValueError, match=r"\[d_sae\]"):
        metrics.dead_fraction(torch.zeros(2, 3))


def test_accumulator_equals_one_shot_metrics():
    g = torch.Generator().manual_seed(0)
    # A large common offset checks the variance merge's numerical stability.
    xs = [torch.randn(n, 6, generator=g) + 100.0 for n in (5, 17, 1, 9)]
    x_hats = [x + 0.3 * torch.randn(x.shape, generator=g) for x in xs]
    acts = [torch.relu(torch.randn(x.shape[0], 10, generator=g)) for x in xs]
    acc = EvalAccumulator(d_in=6, d_sae=10, dense_threshold=0.4)
    for x, x_hat, a in zip(xs, x_hats, acts, strict=True):
        acc.update(x, x_hat, a)
    m = acc.compute()
    x, x_hat, a = torch.cat(xs), torch.cat(x_hats), torch.cat(acts)
    assert m.n_tokens == 32
    assert m.l0 == pytest.approx(metrics.l0(a))
    assert m.mse == pytest.approx(metrics.mse(x, x_hat))
    assert m.normalized_mse == pytest.approx(metrics.normalized_mse(x.double(), x_hat.double()))
    assert m.explained_variance == pytest.approx(metrics.explained_variance(x, x_hat), rel=1e-4)
    assert m.cosine_similarity == pytest.approx(metrics.cosine_similarity(x, x_hat))
    assert m.l2_ratio == pytest.approx(metrics.l2_ratio(x, x_hat))
    freqs = (a != 0).float().mean(0)
    torch.testing.assert_close(m.feature_density, freqs)
    assert m.dense_fraction == metrics.dense_fraction(freqs, 0.4)
    assert m.ce_loss_recovered is None and "feature_density" not in m.scalars()


def test_accumulator_ce_is_token_weighted():
    acc = EvalAccumulator(d_in=2, d_sae=3)
    acc.update(X, X_HAT, torch.ones(2, 3))
    acc.update_ce(2.0, 3.0, 6.0, n_tokens=1)
    acc.update_ce(2.0, 2.0, 6.0, n_tokens=3)
    m = acc.compute()
    assert m.ce_spliced == pytest.approx(2.25)
    assert m.ce_loss_recovered == pytest.approx((6 - 2.25) / 4)
    assert m.delta_lm_loss == pytest.approx(0.25)


def test_accumulator_errors():
    acc = EvalAccumulator(d_in=2, d_sae=3)
    with pytest.raises(ValueError, match="before any update"):
        acc.compute()
    with pytest.raises(ValueError, match="expected x, x_hat"):
        acc.update(X, X_HAT, torch.ones(2, 4))


def test_jackknife_se_of_the_mean_is_the_classic_standard_error():
    from sae.metrics import jackknife_se

    x = torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    loo = (x.sum() - x) / (len(x) - 1)
    assert jackknife_se(loo) == pytest.approx((x.std() / len(x) ** 0.5).item(), rel=1e-12)


def test_context_jackknife_equals_brute_force_leave_one_context_out():
    """Each leave-one-context-out EV and CE recovered, recomputed from scratch with
    sae.metrics on the remaining contexts, gives the same standard errors."""
    from sae.eval_stream import ContextJackknife
    from sae.metrics import ce_loss_recovered, delta_lm_loss, explained_variance, jackknife_se

    g = torch.Generator().manual_seed(1)
    ctx, pos, d = 12, 7, 5
    x = torch.randn(ctx, pos, d, generator=g, dtype=torch.float64) + 4.0
    x_hat = x + 0.3 * torch.randn(ctx, pos, d, generator=g, dtype=torch.float64)
    ce = (
        torch.rand(ctx, 3, generator=g, dtype=torch.float64) * pos
        + torch.tensor([1.0, 2.0, 6.0]) * pos
    )
    jk = ContextJackknife()
    jk.update(x[:5], x_hat[:5], ce[:5], torch.full((5,), pos))
    jk.update(x[5:], x_hat[5:], ce[5:], torch.full((ctx - 5,), pos))
    got = jk.standard_errors()

    keep = [torch.arange(ctx) != i for i in range(ctx)]
    ev = torch.tensor(
        [explained_variance(x[k].reshape(-1, d), x_hat[k].reshape(-1, d)) for k in keep],
        dtype=torch.float64,
    )
    means = [ce[k].sum(0) / (k.sum() * pos) for k in keep]
    rec = torch.tensor([ce_loss_recovered(*m.tolist()) for m in means], dtype=torch.float64)
    delta = torch.tensor(
        [delta_lm_loss(m[0].item(), m[1].item()) for m in means], dtype=torch.float64
    )
    assert got["explained_variance"] == pytest.approx(jackknife_se(ev), rel=1e-9)
    assert got["ce_loss_recovered"] == pytest.approx(jackknife_se(rec), rel=1e-9)
    assert got["delta_lm_loss"] == pytest.approx(jackknife_se(delta), rel=1e-9)
