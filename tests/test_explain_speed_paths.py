"""The explainers' speed paths against the paths they replace.

- `interp.explain.scoring`: masked rows scored over their prefix tree by plain HF modules (and,
  for a plain Llama, `fused_tree`) against the bridge run on each padded batch (`fast=False`).
- `shapley.partition_masks`: the masks scored ahead of time against the masks shap asks for.
- `lime_local.masks_of`: the vectorised parse against reading each string.

Tolerance: scores and attributions agree to 1e-4 of their largest magnitude. The two paths sum
the same float32 products in different orders and block sizes (tree attention over 32-node
blocks, fused products), which moves logits by ~1e-5 on the default model.
"""

import numpy as np
import pytest
import torch

from interp.explain import Target, explain_lime, explain_shap, mask_rows, prepare
from interp.explain.lime_local import MASKED, masks_of
from interp.explain.masking import REMOVED, RowScorer
from interp.explain.scoring import build_trie, distinct_sorted, tree_scorer
from interp.explain.shapley import partition_masks, shap_values

pytestmark = pytest.mark.usefixtures("one_thread")

IOI = "When Mary and John went to the store, John gave a drink to"
MARY_JOHN = Target(" Mary", contrast=" John")


@pytest.fixture(scope="module")
def lm():
    from interp.models import load_model

    return load_model("default", device="cpu", dtype="float32")


def _close(got, want) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1.0)


def _masks(n_rows: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(n_rows, n, generator=gen) < torch.rand(n_rows, 1, generator=gen)
    masks[0] = True
    masks[~masks.any(1), 0] = True  # a model without BOS cannot score an empty row
    masks[1] = masks[2]  # a duplicate row
    return masks


# --- the trie -----------------------------------------------------------------------------------


def test_trie_paths_and_visibility_are_the_prefix_tree():
    """Every sequence's path spells it; each node sees exactly its ancestors and itself (brute
    force over all pairs), whatever block a key falls in; shared beginnings are one node."""
    gen = torch.Generator().manual_seed(0)
    seqs = torch.randint(0, 3, (60, 9), generator=gen)
    lengths = torch.randint(1, 10, (60,), generator=gen)
    unique, _, which = distinct_sorted(seqs, lengths)
    trie = build_trie(unique, pad=7, block=4)
    n = trie.n_real
    parent = {}
    for r in range(len(seqs)):
        k = int(lengths[r])
        node = int(trie.ends[which[r]])
        path = [node]
        while trie.depth[path[-1]] > 0:  # walk up through the visibility of depth - 1
            d = int(trie.depth[path[-1]])
            up = [a for a in range(n) if trie.depth[a] == d - 1 and _sees(trie, path[-1], a)]
            assert len(up) == 1
            parent[path[-1]] = up[0]
            path.append(up[0])
        assert trie.tokens[path[::-1]].tolist() == seqs[r, :k].tolist()
    assert n == len(
        {
            tuple(s[: int(k)].tolist()[:d])
            for s, k in zip(seqs, lengths, strict=True)
            for d in range(1, int(k) + 1)
        }
    )
    for i in range(n):
        ancestors, a = {i}, i
        while a in parent:
            a = parent[a]
            ancestors.add(a)
        assert {j for j in range(n) if _sees(trie, i, j)} == ancestors
    for i in range(n, len(trie)):  # padding nodes see only themselves
        assert [j for j in range(len(trie)) if _sees(trie, i, j)] == [i]


def _sees(trie, i: int, j: int) -> bool:
    """Whether node i attends to node j, read off the block layout."""
    block = trie.sees.shape[1]
    b, within = divmod(i, block)
    if j // block == b:
        return bool(trie.sees[b, within, trie.outside.shape[1] + j % block])
    hits = (trie.outside[b] == j).nonzero()
    return bool(len(hits)) and bool(trie.sees[b, within, int(hits[0])])


# --- scores: tree path against the bridge ---------------------------------------------------------


@pytest.mark.parametrize("baseline", [2, None])
def test_tree_scores_match_the_bridge_on_the_default_model(lm, baseline):
    """The fused Llama pass and HF's own modules (tree attention) both give the bridge's scores."""
    prepared = prepare(lm, IOI, MARY_JOHN)
    rows = mask_rows(prepared.ids, _masks(150, len(prepared.ids), 1), baseline)
    want = RowScorer(lm, prepared, fast=False).scores(rows)
    fast = RowScorer(lm, prepared)
    assert fast.tree is not None and fast.tree.fused
    got = fast.scores(rows)
    _close(got, want)
    distinct = len(torch.unique(rows, dim=0))
    assert fast.forward_rows == distinct and fast.positions < distinct * (len(prepared.ids) + 1)
    fast.tree.fused = False
    try:
        _close(RowScorer(lm, prepared).scores(rows), want)
    finally:
        fast.tree.fused = True


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma", "qwen"])
def test_tree_scores_match_the_bridge_on_tiny_architectures(tiny_models, arch):
    """GPT-2 (learned positions), Llama and Qwen2 (grouped-query attention, biases) and Gemma 3
    (sliding window of 8, shorter than these rows; scaled queries) through HF's modules."""
    model = tiny_models[arch]
    text = "the cat sat on the mat and the dog sat on the log"
    prepared = prepare(model, text, Target(fn=lambda logits: logits[:, 5] - logits.mean(-1)))
    assert tree_scorer(model) is not None
    for baseline in (2, None):
        rows = mask_rows(prepared.ids, _masks(80, len(prepared.ids), 2), baseline)
        want = RowScorer(model, prepared, fast=False).scores(rows)
        _close(RowScorer(model, prepared).scores(rows), want)


def test_soft_capped_gemma2_matches_the_bridge(tiny_gemma2_dir):
    from interp.models import load_model

    model = load_model(str(tiny_gemma2_dir), device="cpu")
    prepared = prepare(model, "the cat sat on the mat and the dog", Target(fn=lambda x: x[:, 5]))
    rows = mask_rows(prepared.ids, _masks(40, len(prepared.ids), 3), 2)
    want = RowScorer(model, prepared, fast=False).scores(rows)
    _close(RowScorer(model, prepared).scores(rows), want)


def test_an_active_hook_sends_scoring_through_the_bridge(lm):
    """With an intervention on, the rows must see it: the scorer runs the bridge."""
    from interp.interventions import intervene, zero_ablate

    prepared = prepare(lm, IOI, MARY_JOHN)
    with intervene(lm, [("blocks.3.hook_attn_out", zero_ablate())]):
        scorer = RowScorer(lm, prepared)
        assert scorer.tree is None
        ablated = scorer.scores(prepared.ids[None])
    assert tree_scorer(lm) is not None
    assert (
        abs(float(ablated[0]) - float(RowScorer(lm, prepared).scores(prepared.ids[None])[0])) > 1e-3
    )


# --- the explainers: same attributions ----------------------------------------------------------


@pytest.mark.parametrize("baseline", [2, None])
def test_shap_values_are_unchanged_by_the_speed_paths(lm, baseline):
    fast = explain_shap(lm, IOI, MARY_JOHN, baseline=baseline)
    slow = explain_shap(lm, IOI, MARY_JOHN, baseline=baseline, fast=False)
    _close(fast.values, slow.values)
    _close([fast.base_value, fast.value], [slow.base_value, slow.value])
    assert fast.evaluations == slow.evaluations
    assert fast.values.sum() == pytest.approx(fast.value - fast.base_value, abs=1e-4)


def test_lime_weights_are_unchanged_by_the_speed_paths(lm):
    fast = explain_lime(lm, IOI, MARY_JOHN, baseline=2, num_samples=400)
    slow = explain_lime(lm, IOI, MARY_JOHN, baseline=2, num_samples=400, fast=False)
    _close(fast.values, slow.values)
    assert fast.extra["score"] == pytest.approx(slow.extra["score"], abs=1e-4)
    assert fast.evaluations == slow.evaluations == 400


# --- Partition's masks, scored ahead ------------------------------------------------------------


class _Recorder:
    """A score function that records the rows it is asked for and the rows prefetched."""

    def __init__(self) -> None:
        self.asked: set[bytes] = set()
        self.prefetched: set[bytes] = set()

    def __call__(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        self.asked |= {r.tobytes() for r in rows}
        return np.sin(rows).sum(1) + 0.01 * rows.sum(1)

    def prefetch(self, rows):
        self.prefetched |= {r.tobytes() for r in np.asarray(rows, dtype=np.int64)}


@pytest.mark.parametrize("n,max_evals", [(5, 500), (16, 500), (17, 500), (16, 100), (40, 500)])
def test_partition_masks_are_what_shap_asks_for(n, max_evals):
    """When the whole tree fits the budget, exactly the masks shap evaluates; otherwise a part
    of them (the rest is asked for as shap goes)."""
    score = _Recorder()
    shap_values(torch.arange(10, 10 + n), score, 2, "partition", max_evals, 128)
    assert score.prefetched <= score.asked
    whole = len(partition_masks(n, 10**6, 128))
    if whole <= max_evals - 2:
        assert score.prefetched == score.asked
    else:
        assert 2 < len(score.prefetched) < len(score.asked)


# --- LIME's strings -----------------------------------------------------------------------------


def test_masks_of_reads_each_string_as_before():
    gen = np.random.default_rng(0)
    masks = gen.random((200, 11)) < 0.5
    strings = [" ".join(str(j) if k else MASKED for j, k in enumerate(m)) for m in masks]
    assert (masks_of(strings, 11) == masks).all()
    from interp.explain import ExplainError

    for bad in ["0 1 2", "0 x 2 3 4 5 6 7 8 9 10", "1 1 2 3 4 5 6 7 8 9 10"]:
        with pytest.raises(ExplainError, match="unexpected perturbation"):
            masks_of(strings[:2] + [bad], 11)


def test_removed_rows_pack_identically_in_both_paths(lm):
    """Removal rows that pack to the same tokens (a repeated word masked either way) are one
    sequence in the tree path and keep their own scores' equality."""
    prepared = prepare(lm, " the the cat sat", Target(" the"))
    ids = prepared.ids
    assert ids[0] == ids[1]
    a = torch.ones(len(ids), dtype=torch.bool)
    b = a.clone()
    a[0] = False
    b[1] = False
    rows = mask_rows(ids, torch.stack([a, b]), None)
    assert (rows == REMOVED).sum() == 2
    got = RowScorer(lm, prepared).scores(rows)
    assert got[0] == got[1]
    _close(got, RowScorer(lm, prepared, fast=False).scores(rows))
