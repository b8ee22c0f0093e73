"""The one-pass statistics of `interp.dashboard.stats` against a brute-force recomputation over
all activations at once (numpy, no streaming): top-k, the quantile sample, histograms, density,
co-activation counts and the token base counts must be equal, not close."""

import numpy as np
import pytest
import torch

from interp.dashboard import stats as stats_module
from interp.dashboard.stats import FeatureAccumulator, hist_edges, priority

N_CTX, CTX, D_SAE, VOCAB, BOS = 12, 10, 7, 30, 0


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (N_CTX, CTX), generator=g)
    tokens[:, 0] = BOS
    tokens[3, 0] = 5  # a context that does not start with BOS: its position 0 counts
    acts = torch.relu(torch.randn(N_CTX, CTX, D_SAE, generator=g) * 2 - 1.5)
    acts[..., 6] = 0.0  # a dead latent
    acts[..., 5] = torch.rand(N_CTX, CTX, generator=g) + 0.1  # a latent that always fires
    acts[2, 4, 1] = 1e-5  # below the first log edge: the underflow bin
    return tokens, acts


def _stream(tokens, acts, splits, **kw):
    acc = FeatureAccumulator(D_SAE, VOCAB, CTX, bos_id=BOS, **kw)
    start = 0
    for size in splits:
        acc.update(tokens[start : start + size], acts[start : start + size], start)
        start += size
    assert start == N_CTX
    return acc.finish()


def _reference(tokens, acts):
    t, a = tokens.numpy(), acts.numpy().copy()
    counted = np.ones_like(t, dtype=bool)
    counted[:, 0] = t[:, 0] != BOS
    a[~counted] = 0.0
    return t, a.reshape(-1, D_SAE), counted


@pytest.fixture(scope="module")
def case():
    tokens, acts = _data()
    return tokens, acts, _stream(tokens, acts, [5, 1, 4, 2], top_k=4, sample=6, left=3, right=2)


def test_density_histogram_and_coactivations_equal_brute_force(case):
    tokens, acts, stats = case
    t, flat, counted = _reference(tokens, acts)
    assert stats.n_tokens == counted.sum()
    fired = flat > 0
    np.testing.assert_array_equal(stats.fires.numpy(), fired.sum(0))
    np.testing.assert_array_equal(
        stats.coact.matrix().numpy(), fired.T.astype(int) @ fired.astype(int)
    )
    np.testing.assert_allclose(stats.act_sum.numpy(), flat.sum(0), rtol=1e-6)
    edges = hist_edges().numpy()
    for f in range(D_SAE):
        want, _ = np.histogram(flat[fired[:, f], f], bins=edges)
        np.testing.assert_array_equal(stats.hist[f].numpy(), want)
    assert stats.hist[1, 0] >= 1 and stats.fires[6] == 0 and stats.fires[5] == counted.sum()


def test_token_counts_equal_brute_force(case):
    tokens, acts, stats = case
    t, _, counted = _reference(tokens, acts)
    np.testing.assert_array_equal(stats.unigram.numpy(), np.bincount(t[counted], minlength=VOCAB))
    prev = t[:, :-1][counted[:, 1:]]
    np.testing.assert_array_equal(stats.prev_unigram.numpy(), np.bincount(prev, minlength=VOCAB))
    pairs = prev * VOCAB + t[:, 1:][counted[:, 1:]]
    np.testing.assert_array_equal(
        stats.bigram[: VOCAB * VOCAB].numpy(), np.bincount(pairs, minlength=VOCAB * VOCAB)
    )


def _window(t, a_flat, row, f, left, right):
    ctx, pos = divmod(row, CTX)
    toks, vals = [], []
    for p in range(pos - left, pos + right + 1):
        inside = 0 <= p < CTX
        toks.append(t[ctx, p] if inside else -1)
        vals.append(a_flat[ctx * CTX + p, f] if inside else 0.0)
    return toks, vals


def test_top_k_examples_and_windows_equal_brute_force(case):
    tokens, acts, stats = case
    t, flat, _ = _reference(tokens, acts)
    for f in range(D_SAE):
        fired = np.flatnonzero(flat[:, f] > 0)
        want = fired[np.argsort(-flat[fired, f], kind="stable")][:4]
        got = stats.top.rows[f].numpy()
        assert list(got[: len(want)]) == list(want)
        assert (got[len(want) :] == -1).all()
        for i, row in enumerate(want):
            assert stats.top.values[f, i].item() == flat[row, f]
            toks, vals = _window(t, flat, row, f, 3, 2)
            assert stats.top.tokens[f, i].tolist() == toks
            np.testing.assert_array_equal(stats.top.acts[f, i].numpy(), np.float32(vals))


def test_quantile_sample_is_the_smallest_priorities_among_firings(case):
    tokens, acts, stats = case
    t, flat, _ = _reference(tokens, acts)
    for f in range(D_SAE):
        fired = np.flatnonzero(flat[:, f] > 0)
        keys = priority(torch.tensor(fired), torch.full((len(fired),), f), 0).numpy()
        chosen = fired[np.argsort(keys, kind="stable")][:6]
        got = stats.sample.rows[f].numpy()
        assert sorted(got[got >= 0]) == sorted(chosen)
        values = stats.sample.values[f][: len(chosen)].numpy()
        assert (np.diff(values) >= 0).all() and (values > 0).all()  # by value, firings only
        for i, row in enumerate(got[: len(chosen)]):
            toks, _ = _window(t, flat, row, f, 3, 2)
            assert stats.sample.tokens[f, i].tolist() == toks


def test_batching_does_not_change_the_result(case):
    tokens, acts, stats = case
    one = _stream(tokens, acts, [N_CTX], top_k=4, sample=6, left=3, right=2)
    for name in ("fires", "hist", "unigram"):
        assert torch.equal(getattr(one, name), getattr(stats, name))
    assert torch.equal(one.coact.matrix(), stats.coact.matrix())
    assert torch.equal(one.top.rows, stats.top.rows)
    assert torch.equal(one.sample.rows, stats.sample.rows)


def test_priorities_look_uniform():
    keys = priority(torch.arange(20000), torch.full((20000,), 3), 0).double() / 2**31
    assert abs(keys.mean().item() - 0.5) < 0.01 and abs(keys.std().item() - 12**-0.5) < 0.01


@pytest.mark.parametrize("chunk", [1, 9, 1 << 24])
def test_sparse_coactivation_counts_equal_brute_force(monkeypatch, chunk):
    """Above DENSE_PAIRS_MAX latents the pair counts are sparse (sorted keys, merged every
    PAIR_CHUNK keys, token rows expanded in chunks): the same table and rows as brute force,
    for chunks of one row, of a few rows, and of the whole batch."""
    monkeypatch.setattr(stats_module, "DENSE_PAIRS_MAX", 0)
    monkeypatch.setattr(stats_module, "PAIR_CHUNK", chunk)
    tokens, acts = _data(1)
    got = _stream(tokens, acts, [5, 7], top_k=4, sample=6, left=3, right=2).coact
    assert not got.dense
    _, flat, _ = _reference(tokens, acts)
    fired = (flat > 0).astype(int)
    want = fired.T @ fired
    np.testing.assert_array_equal(got.matrix().numpy(), want)
    for f in range(D_SAE):
        np.testing.assert_array_equal(got.row(f).numpy(), want[f])
