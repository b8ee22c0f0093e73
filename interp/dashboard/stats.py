"""Per-latent statistics of an SAE, accumulated batch by batch in one pass (memory independent of
the number of tokens).

`FeatureAccumulator.update(tokens, acts, first_context)` takes one batch of contexts and its SAE
activations `[batch, pos, d_sae]`; `finish()` returns `FeatureStats`. Per latent it keeps:

- the top-k activations with their context windows (token ids and the latent's per-token values);
- a uniform sample of its non-zero activations, without replacement, with windows: the `sample`
  firings with the smallest priority `priority(row, latent)` (a seeded hash of the token's
  global index and the latent, so the sample is deterministic and a brute-force recomputation
  finds the same one). Quantile examples are taken from this sample by rank, so every group
  shows examples where the latent fired; when it fired at most `sample` times the sample holds
  every firing and the quantiles are exact;
- a histogram of its non-zero activations on fixed log-spaced bins (exact counts), its firing
  count and activation sum, and co-activation counts with every other latent (`PairCounts`:
  a dense d_sae x d_sae table up to `DENSE_PAIRS_MAX` latents, sparse above, so that a 65k-latent
  SAE does not need a 17 GB table);
- across latents: unigram counts and (hashed) bigram counts of the tokens seen, the base rates
  of the automatic labels.

Positions that hold BOS at position 0 are left out (SAEs are trained without them): their
activations count as zero everywhere.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

HIST_DECADES = (-4, 4)
HIST_PER_DECADE = 20
BIGRAM_BUCKETS = 1 << 22
"""Hash buckets of the bigram base counts: exact when vocab**2 <= 2**22 (vocab <= 2048)."""
_MASK31 = 0x7FFFFFFF
DENSE_PAIRS_MAX = 8192
"""Up to this many latents the co-activation counts are a dense int64 table (512 MB at 8,192);
above it they are sparse (only the pairs that occurred)."""
PAIR_CHUNK = 1 << 24
"""Most latent pairs expanded at once (one chunk of token rows at a time)."""


def hist_edges() -> Float[Tensor, " n_edges"]:
    """Edges of the activation histogram: 0, then log-spaced from 1e-4 to 1e4 (20 per decade),
    then +inf. Bin i holds values in [edges[i], edges[i+1]); zero is never counted."""
    lo, hi = HIST_DECADES
    logs = torch.linspace(lo, hi, (hi - lo) * HIST_PER_DECADE + 1, dtype=torch.float64)
    inf = torch.tensor([float("inf")], dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), 10.0**logs, inf]).float()


def priority(rows: Int[Tensor, " n"], latents: Int[Tensor, " n"], seed: int) -> Int[Tensor, " n"]:
    """A pseudo-random 31-bit priority per (global token row, latent): the quantile sample keeps
    each latent's smallest ones. Integer mixing kept below 2**62, so no overflow."""
    x = (rows * 1_000_003 + latents * 7_919 + seed * 104_729) & _MASK31
    for mult in (0x5BD1E995, 0x27D4EB2F):
        x = x ^ (x >> 15)
        x = (x * mult) & _MASK31
    return x ^ (x >> 13)


@dataclass
class Examples:
    """Examples per latent: `[d_sae, n, ...]`. `rows` are global token indices
    (context * ctx_len + position; -1 where the slot is empty), `tokens` and `acts` the window
    around the token (`left` before, `right` after; token -1 outside the context)."""

    values: Float[Tensor, "d_sae n"]
    rows: Int[Tensor, "d_sae n"]
    tokens: Int[Tensor, "d_sae n window"]
    acts: Float[Tensor, "d_sae n window"]


class PairCounts:
    """Counts of tokens on which two latents both fired, accumulated from pair keys
    `a * d + b`: a dense table when d <= `dense_max`, else the sorted distinct keys and their
    counts (pending batches merged every `PAIR_CHUNK` keys). Symmetric; the diagonal is each
    latent's firing count."""

    def __init__(self, d: int, device: torch.device, dense_max: int | None = None) -> None:
        dense_max = DENSE_PAIRS_MAX if dense_max is None else dense_max
        self.d, self.device, self.dense = d, device, d <= dense_max
        z = dict(device=device, dtype=torch.long)
        self.table = torch.zeros(d * d if self.dense else 0, **z)
        self.keys = torch.zeros(0, **z)
        self.counts = torch.zeros(0, **z)
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._n_pending = 0

    def add(self, keys: Int[Tensor, " n"], counts: Int[Tensor, " n"] | None = None) -> None:
        """Count each key once (or `counts` times)."""
        counts = torch.ones_like(keys) if counts is None else counts
        if self.dense:
            self.table.index_add_(0, keys, counts)
            return
        keys, inverse = torch.unique(keys, return_inverse=True)
        self._pending.append((keys, torch.zeros_like(keys).index_add_(0, inverse, counts)))
        self._n_pending += len(keys)
        if self._n_pending > PAIR_CHUNK:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = torch.cat([self.keys, *(k for k, _ in self._pending)])
        counts = torch.cat([self.counts, *(c for _, c in self._pending)])
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.counts = torch.zeros_like(self.keys).index_add_(0, inverse, counts)
        self._pending, self._n_pending = [], 0

    def finished(self, device: torch.device) -> "PairCounts":
        """Pending batches merged, moved to `device`."""
        self._merge()
        out = PairCounts.__new__(PairCounts)
        out.__dict__.update(self.__dict__)
        out.device = device
        out.table, out.keys, out.counts = (
            x.to(device) for x in (self.table, self.keys, self.counts)
        )
        out._pending, out._n_pending = [], 0
        return out

    def row(self, a: int) -> Int[Tensor, " d"]:
        """Counts of latent `a` with every latent."""
        if self.dense:
            return self.table[a * self.d : (a + 1) * self.d].clone()
        self._merge()
        lo, hi = torch.searchsorted(self.keys, torch.tensor([a * self.d, (a + 1) * self.d]))
        out = torch.zeros(self.d, dtype=torch.long, device=self.device)
        out[self.keys[lo:hi] - a * self.d] = self.counts[lo:hi]
        return out

    def matrix(self) -> Int[Tensor, "d d"]:
        """The whole table, dense (for small d and for tests)."""
        if self.dense:
            return self.table.view(self.d, self.d)
        self._merge()
        out = torch.zeros(self.d * self.d, dtype=torch.long, device=self.device)
        out[self.keys] = self.counts
        return out.view(self.d, self.d)


@dataclass
class FeatureStats:
    """What one pass found, per latent (all on the CPU)."""

    n_tokens: int
    """Tokens counted (BOS positions left out)."""
    ctx_len: int
    left: int
    """Window tokens before the example's token."""
    fires: Int[Tensor, " d_sae"]
    """Tokens where the latent was non-zero."""
    act_sum: Float[Tensor, " d_sae"]
    top: Examples
    """Top-k activations, largest first (rows -1 past the latent's firings)."""
    sample: Examples
    """Uniform sample of firings, ordered by value (smallest first)."""
    sample_keys: Float[Tensor, "d_sae n"]
    hist: Int[Tensor, "d_sae bins"]
    """Counts per `hist_edges()` bin of the non-zero activations."""
    coact: PairCounts
    """Tokens where both latents fired (diagonal: `fires`): `.row(f)`, `.matrix()`."""
    unigram: Int[Tensor, " vocab"]
    """Counts of the counted tokens."""
    prev_unigram: Int[Tensor, " vocab"]
    """Counts of the token before each counted token (where there is one)."""
    bigram: Int[Tensor, " buckets"]
    """Hashed counts of (previous token, token) pairs, `bigram_bucket`."""

    @property
    def density(self) -> Float[Tensor, " d_sae"]:
        """Firing rate: fires / n_tokens."""
        return self.fires.double() / max(self.n_tokens, 1)


def bigram_bucket(prev: Tensor, token: Tensor, vocab: int) -> Tensor:
    """Bucket of a (previous, current) token pair in `FeatureStats.bigram`."""
    return (prev * vocab + token) % BIGRAM_BUCKETS


class _Store:
    """Examples kept per latent in unordered slots, with their keys (smaller is better; +inf
    for an empty slot)."""

    def __init__(self, examples: Examples) -> None:
        v = examples.values
        self.examples = examples
        self.keys = torch.full(v.shape, torch.inf, dtype=torch.float64, device=v.device)

    @property
    def n(self) -> int:
        return self.keys.shape[1]


@dataclass
class _Batch:
    """One batch as `_offer` reads it: its firings (local rows, latents, values)."""

    tokens: Tensor
    flat: Tensor
    base: int
    rows: Tensor
    cols: Tensor
    vals: Tensor


def _rank_in_group(groups: Tensor, n_groups: int) -> Tensor:
    """Position of each element within its run of equal `groups` values (sorted input)."""
    counts = torch.bincount(groups, minlength=n_groups)
    starts = counts.cumsum(0) - counts
    return torch.arange(len(groups), device=groups.device) - starts[groups]


class FeatureAccumulator:
    """Streaming statistics of `d_sae` latents; see the module docstring."""

    def __init__(
        self,
        d_sae: int,
        vocab: int,
        ctx_len: int,
        *,
        top_k: int = 20,
        sample: int = 64,
        left: int = 16,
        right: int = 6,
        bos_id: int | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.d_sae, self.vocab, self.ctx_len = d_sae, vocab, ctx_len
        self.k, self.r, self.left, self.right = top_k, sample, left, right
        self.bos_id, self.seed, self.device = bos_id, seed, torch.device(device)
        self.offsets = torch.arange(-left, right + 1, device=self.device)
        self.edges = hist_edges().to(self.device)
        nb, dev, w = len(self.edges) - 1, self.device, left + right + 1
        z = dict(device=dev, dtype=torch.long)
        self.n_tokens = 0
        self.fires = torch.zeros(d_sae, **z)
        self.act_sum = torch.zeros(d_sae, device=dev, dtype=torch.float64)
        self.hist = torch.zeros(d_sae * nb, **z)
        self.coact = PairCounts(d_sae, dev)
        self.unigram = torch.zeros(vocab, **z)
        self.prev_unigram = torch.zeros(vocab, **z)
        self.bigram = torch.zeros(BIGRAM_BUCKETS, **z)
        self.top = _Store(_empty(d_sae, top_k, w, dev))
        self.sample = _Store(_empty(d_sae, sample, w, dev))

    def update(
        self, tokens: Int[Tensor, "batch pos"], acts: Float[Tensor, "batch pos d_sae"], first: int
    ) -> None:
        """Add one batch: contexts `first, first + 1, ...` of the pass."""
        tokens = tokens.to(self.device)
        acts = acts.to(self.device, torch.float32)
        keep = self._counted(tokens)
        acts = acts * keep[..., None]
        flat = acts.reshape(-1, self.d_sae)
        base = first * self.ctx_len
        self.n_tokens += int(keep.sum())
        self._count_tokens(tokens, keep)
        nz_rows, nz_cols = flat.nonzero(as_tuple=True)
        nz_vals = flat[nz_rows, nz_cols]
        self.fires += torch.bincount(nz_cols, minlength=self.d_sae)
        self.act_sum.index_add_(0, nz_cols, nz_vals.double())
        nb = len(self.edges) - 1
        bins = torch.bucketize(nz_vals, self.edges, right=True) - 1
        self.hist += torch.bincount(nz_cols * nb + bins, minlength=self.d_sae * nb)
        self._coactivations(flat.shape[0], nz_rows, nz_cols)
        batch = _Batch(tokens, flat, base, nz_rows, nz_cols, nz_vals)
        self._offer(self.top, batch, -nz_vals.double())
        self._offer(self.sample, batch, priority(nz_rows + base, nz_cols, self.seed).double())

    def _counted(self, tokens: Tensor) -> Tensor:
        keep = torch.ones_like(tokens, dtype=torch.bool)
        if self.bos_id is not None:
            keep[:, 0] = tokens[:, 0] != self.bos_id
        return keep

    def _count_tokens(self, tokens: Tensor, keep: Tensor) -> None:
        self.unigram += torch.bincount(tokens[keep], minlength=self.vocab)
        prev, cur = tokens[:, :-1], tokens[:, 1:]
        has_prev = keep[:, 1:]
        self.prev_unigram += torch.bincount(prev[has_prev], minlength=self.vocab)
        buckets = bigram_bucket(prev[has_prev], cur[has_prev], self.vocab)
        self.bigram.index_add_(0, buckets, torch.ones_like(buckets))

    def _coactivations(self, n_rows: int, rows: Tensor, cols: Tensor) -> None:
        """Pairs of latents firing on the same token, from the (row-major) firings."""
        if len(rows) == 0:
            return
        per_row = torch.bincount(rows, minlength=n_rows)
        if self.coact.dense and int(per_row.max()) > 64:
            # dense latents: one matrix product beats expanding the pairs
            fired = torch.zeros(n_rows, self.d_sae, device=self.device)
            fired[rows, cols] = 1.0
            self.coact.table += (fired.T @ fired).round().long().reshape(-1)
            return
        # token rows in chunks of at most PAIR_CHUNK pairs (a row with m firings has m^2)
        starts = per_row.cumsum(0) - per_row  # first firing of each row in `rows`
        for a, b in _chunk_bounds(per_row.tolist(), PAIR_CHUNK):
            lo, hi = int(starts[a]), int(starts[b - 1] + per_row[b - 1])
            r, c, counts = rows[lo:hi] - a, cols[lo:hi], per_row[a:b]
            most = int(counts.max())
            if most == 0:
                continue
            rank = torch.arange(hi - lo, device=self.device) - (counts.cumsum(0) - counts)[r]
            idx = torch.full((b - a, most), -1, dtype=torch.long, device=self.device)
            idx[r, rank] = c
            x, y = idx[:, :, None], idx[:, None, :]
            self.coact.add((x * self.d_sae + y)[(x >= 0) & (y >= 0)])

    def _windows(self, tokens: Tensor, flat: Tensor, rows: Tensor, latents: Tensor):
        """Token ids and the latent's values in the window around each local row."""
        pos = rows % self.ctx_len
        ctx = rows // self.ctx_len
        where = pos[..., None] + self.offsets
        inside = (where >= 0) & (where < self.ctx_len)
        where = where.clamp(0, self.ctx_len - 1)
        ctx_b = ctx[..., None].expand_as(where)
        toks = torch.where(inside, tokens[ctx_b, where], -1)
        vals = flat[ctx_b * self.ctx_len + where, latents[..., None].expand_as(where)]
        return toks, torch.where(inside, vals, 0.0)

    def _offer(self, store: _Store, batch: _Batch, keys: Tensor) -> None:
        """Keep, per latent, the `store.n` smallest keys among the stored examples and the
        batch's firings (`keys` aligned with `batch.rows`); ties go to the earlier token. Only
        the slots that change are written, so a batch costs in proportion to its winners."""
        rows, cols, vals = batch.rows, batch.cols, batch.vals
        better = keys <= store.keys.max(dim=1).values[cols]
        rows, cols, vals, keys = rows[better], cols[better], vals[better], keys[better]
        if len(rows) == 0:
            return
        order = torch.sort(keys, stable=True).indices
        order = order[torch.sort(cols[order], stable=True).indices]
        rows, cols, vals, keys = rows[order], cols[order], vals[order], keys[order]
        rank = _rank_in_group(cols, self.d_sae)
        small = rank < store.n
        rows, cols, vals, keys, rank = (t[small] for t in (rows, cols, vals, keys, rank))
        width = int(rank.max()) + 1
        cand = torch.full((self.d_sae, width), torch.inf, dtype=torch.float64, device=self.device)
        cand[cols, rank] = keys
        union = torch.cat([store.keys, cand], dim=1)
        chosen = torch.zeros_like(union, dtype=torch.bool)
        best = torch.sort(union, dim=1, stable=True).indices[:, : store.n]
        chosen.scatter_(1, best, True)
        chosen &= torch.isfinite(union)
        won = chosen[cols, store.n + rank]
        free_f, free_slot = (~chosen[:, : store.n]).nonzero(as_tuple=True)
        free_rank = _rank_in_group(free_f, self.d_sae)
        slot_of = torch.full((self.d_sae, store.n), -1, dtype=torch.long, device=self.device)
        slot_of[free_f, free_rank] = free_slot
        rows, cols, vals, keys = rows[won], cols[won], vals[won], keys[won]
        slots = slot_of[cols, _rank_in_group(cols, self.d_sae)]
        toks, wvals = self._windows(batch.tokens, batch.flat, rows, cols)
        store.keys[cols, slots] = keys
        e = store.examples
        e.values[cols, slots], e.rows[cols, slots] = vals, rows + batch.base
        e.tokens[cols, slots], e.acts[cols, slots] = toks, wvals

    def finish(self) -> FeatureStats:
        """The statistics so far, on the CPU: top-k largest first, the sample by value."""
        nb = len(self.edges) - 1
        cpu = torch.device("cpu")
        top = _take(self.top.examples, self.top.keys.argsort(dim=1, stable=True))
        s = self.sample.examples
        order = torch.where(s.rows >= 0, s.values, torch.inf).argsort(dim=1, stable=True)
        return FeatureStats(
            n_tokens=self.n_tokens,
            ctx_len=self.ctx_len,
            left=self.left,
            fires=self.fires.to(cpu),
            act_sum=self.act_sum.to(cpu),
            top=_to(top, cpu),
            sample=_to(_take(s, order), cpu),
            sample_keys=self.sample.keys.gather(1, order).to(cpu),
            hist=self.hist.view(self.d_sae, nb).to(cpu),
            coact=self.coact.finished(cpu),
            unigram=self.unigram.to(cpu),
            prev_unigram=self.prev_unigram.to(cpu),
            bigram=self.bigram.to(cpu),
        )


def _chunk_bounds(per_row: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) ranges of token rows whose pair expansion, rows x (most firings
    in the range)^2, stays within `budget` (a row over it alone gets a range of its own)."""
    out, start, most = [], 0, 0
    for i, m in enumerate(per_row):
        most = max(most, m)
        if i > start and (i - start + 1) * most**2 > budget:
            out.append((start, i))
            start, most = i, m
    if start < len(per_row):
        out.append((start, len(per_row)))
    return out


def _empty(d_sae: int, n: int, w: int, device: torch.device) -> Examples:
    return Examples(
        torch.full((d_sae, n), -torch.inf, device=device),
        torch.full((d_sae, n), -1, dtype=torch.long, device=device),
        torch.full((d_sae, n, w), -1, dtype=torch.long, device=device),
        torch.zeros((d_sae, n, w), device=device),
    )


def _take(e: Examples, idx: Tensor) -> Examples:
    def pick(x: Tensor) -> Tensor:
        if x.dim() == 2:
            return x.gather(1, idx)
        return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))

    return Examples(*(pick(x) for x in _fields(e)))


def _to(e: Examples, device: torch.device) -> Examples:
    return Examples(*(x.to(device) for x in _fields(e)))


def _fields(e: Examples) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return e.values, e.rows, e.tokens, e.acts
