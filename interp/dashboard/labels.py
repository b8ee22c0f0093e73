"""Automatic labels with no external API: a token rule per latent, chosen on the pass's sample of
firings and scored on held-out tokens.

A rule says "the latent fires where the token (or the token before it, or the bigram ending at
it) is one of these". For each kind, candidate keys are ranked by their estimated precision
(lift over the base rate: the share of the latent's sampled firings on the key, times its firing
count, over the key's count in the pass) and added greedily while the estimated F1 grows. The
kind with the best estimated F1 wins. Its precision and recall are then measured exactly on
held-out contexts that the rule never saw (`Heldout`): precision = P(fires | rule holds),
recall = P(rule holds | fires); the label's score is their F1. Everything is deterministic.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from torch import Tensor

from interp.dashboard.stats import FeatureStats, bigram_bucket

KINDS = ("token", "prev", "bigram")
"""token: the token where the latent fires; prev: the token before it; bigram: both."""
MAX_KEYS = 8
MIN_COUNT = 2
"""A key needs this many sampled firings to enter a rule (1 when the sample is under 10)."""


@dataclass
class Heldout:
    """Held-out contexts and where each latent fired on them (BOS positions not counted)."""

    tokens: Int[Tensor, "n_ctx ctx_len"]
    counted: Tensor
    """[n_ctx, ctx_len] bool: positions that count."""
    rows: Int[Tensor, " n_fire"]
    """Flat positions (ctx * ctx_len + pos) of the firings, with `latents` alongside."""
    latents: Int[Tensor, " n_fire"]

    def keys(self, kind: str, vocab: int) -> Int[Tensor, " n_positions"]:
        """The rule key of every flat position (-1 where it has none, or does not count)."""
        cur = self.tokens
        prev = torch.cat([torch.full_like(cur[:, :1], -1), cur[:, :-1]], dim=1)
        if kind == "token":
            key = cur
        elif kind == "prev":
            key = prev
        else:
            key = torch.where(prev >= 0, prev * vocab + cur, -1)
        return torch.where(self.counted, key, -1).reshape(-1)


@dataclass
class Label:
    """A latent's rule, its held-out precision and recall, and what else describes it."""

    kind: str
    keys: list[int]
    """Token ids (token, prev) or prev * vocab + token (bigram)."""
    precision: float
    recall: float
    estimated_f1: float
    shares: list[float] = field(default_factory=list)
    """Each key's share of the latent's sampled firings."""
    lift: list[tuple[int, float]] = field(default_factory=list)
    """(token id, lift) of the tokens most over-represented where it fires."""
    next_token: int | None = None
    """The most frequent token right after its firings (in the sample)."""

    @property
    def score(self) -> float:
        """Held-out F1 of the rule: 2PR / (P + R)."""
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def text(self, vocab: Sequence[str]) -> str:
        """The rule in words, e.g. `token ∈ {" Rose", " Paul"}`."""

        def show(key: int) -> str:
            if self.kind == "bigram":
                a, b = divmod(key, len(vocab))
                return _quote(vocab[a] + vocab[b])
            return _quote(vocab[key])

        keys = ", ".join(show(k) for k in self.keys)
        where = {"token": "token", "prev": "after", "bigram": "bigram"}[self.kind]
        return f"{where} ∈ {{{keys}}}"


def _quote(text: str) -> str:
    return '"' + text.replace("\n", "\\n") + '"'


def _base_counts(stats: FeatureStats, kind: str, keys: Tensor, vocab: int) -> Tensor:
    if kind == "token":
        return stats.unigram[keys]
    if kind == "prev":
        return stats.prev_unigram[keys]
    a, b = keys // vocab, keys % vocab
    return stats.bigram[bigram_bucket(a, b, vocab)]


def _sample_keys(stats: FeatureStats, f: int, kind: str, vocab: int) -> Tensor:
    valid = stats.sample.rows[f] >= 0
    window = stats.sample.tokens[f][valid]
    cur, prev = window[:, stats.left], window[:, stats.left - 1]
    if kind == "token":
        return cur
    if kind == "prev":
        return prev[prev >= 0]
    ok = prev >= 0
    return prev[ok] * vocab + cur[ok]


def choose_rule(
    stats: FeatureStats, f: int, kind: str, vocab: int
) -> tuple[list[int], float, list[float]]:
    """Greedy key set of one kind for latent `f`, its estimated F1 (see the module doc), and
    each key's share of the sampled firings."""
    n_sample = int((stats.sample.rows[f] >= 0).sum())
    keys = _sample_keys(stats, f, kind, vocab)
    if n_sample == 0 or len(keys) == 0:
        return [], 0.0, []
    uniq, counts = torch.unique(keys, return_counts=True)
    base = _base_counts(stats, kind, uniq, vocab).double().clamp_min(1)
    est_fires = int(stats.fires[f]) * counts.double() / n_sample
    precision = (est_fires / base).clamp(max=1.0)
    need = MIN_COUNT if n_sample >= 10 else 1
    keys_l, counts_l = uniq.tolist(), counts.tolist()
    prec_l, fires_l, base_l = precision.tolist(), est_fires.tolist(), base.tolist()
    order = sorted(
        (i for i in range(len(keys_l)) if counts_l[i] >= need),
        key=lambda i: (-prec_l[i], -counts_l[i], keys_l[i]),
    )
    chosen: list[int] = []
    shares: list[float] = []
    best = hits = fires_in = base_in = 0.0
    for i in order[: 4 * MAX_KEYS]:
        hits_i, fires_i, base_i = hits + counts_l[i], fires_in + fires_l[i], base_in + base_l[i]
        p, r = min(1.0, fires_i / base_i), hits_i / n_sample
        f1 = 2 * p * r / (p + r)
        if f1 <= best or len(chosen) == MAX_KEYS:
            break
        chosen.append(keys_l[i])
        shares.append(counts_l[i] / n_sample)
        best, hits, fires_in, base_in = f1, hits_i, fires_i, base_i
    return chosen, best, shares


def heldout_scores(
    heldout: Heldout, f: int, kind: str, keys: list[int], vocab: int, cache: dict
) -> tuple[float, float]:
    """Exact (precision, recall) of the rule on the held-out contexts."""
    if kind not in cache:
        cache[kind] = heldout.keys(kind, vocab)
    flat_keys = cache[kind]
    holds = torch.isin(flat_keys, torch.tensor(keys, dtype=flat_keys.dtype)) & (flat_keys >= 0)
    fired_rows = heldout.rows[heldout.latents == f]
    tp = int(holds[fired_rows].sum())
    n_holds, n_fired = int(holds.sum()), len(fired_rows)
    return (tp / n_holds if n_holds else 0.0), (tp / n_fired if n_fired else 0.0)


def _lift(stats: FeatureStats, f: int, n: int = 5) -> list[tuple[int, float]]:
    keys = _sample_keys(stats, f, "token", 0)
    if len(keys) == 0:
        return []
    uniq, counts = torch.unique(keys, return_counts=True)
    base = stats.unigram[uniq].double().clamp_min(1) / max(stats.n_tokens, 1)
    lift = counts.double() / len(keys) / base
    order = lift.argsort(descending=True)[:n]
    return [(int(uniq[i]), round(float(lift[i]), 2)) for i in order]


def _next_token(stats: FeatureStats, f: int) -> int | None:
    window = stats.sample.tokens[f][stats.sample.rows[f] >= 0]
    if window.shape[-1] <= stats.left + 1:  # no right context kept
        return None
    nxt = window[:, stats.left + 1]
    if not (nxt >= 0).any():
        return None
    uniq, counts = torch.unique(nxt[nxt >= 0], return_counts=True)
    return int(uniq[counts.argmax()])


def label_features(
    stats: FeatureStats, heldout: Heldout, features: Sequence[int], vocab: int
) -> dict[int, Label | None]:
    """A `Label` for each latent in `features` (None for a latent that never fired)."""
    cache: dict = {}
    labels: dict[int, Label | None] = {}
    for f in features:
        if int(stats.fires[f]) == 0:
            labels[f] = None
            continue
        found = [(*choose_rule(stats, f, kind, vocab), kind) for kind in KINDS]
        keys, est, shares, kind = max(found, key=lambda x: x[1])  # first kind wins a tie
        if not keys:
            labels[f] = None
            continue
        p, r = heldout_scores(heldout, f, kind, keys, vocab, cache)
        labels[f] = Label(kind, keys, p, r, est, shares, _lift(stats, f), _next_token(stats, f))
    return labels
