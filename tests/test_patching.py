"""Patching against TransformerLens's `patching` module, the one-patch-at-a-time path, closed
forms, and the default model's documented heads.

TransformerLens's `get_act_patch_*` functions run on a `TransformerBridge` as they are (they use
`run_with_cache`, `run_with_hooks` and `cfg`), so every comparison runs both on the same bridge,
prompts and metric. Tolerance: fp32, atol 1e-4 on logit differences of order 1-10: the folded
batch sums in another order than one row at a time (measured differences are ~1e-6).
"""

import pytest
import torch
from transformer_lens import patching as tl_patching

from interp.patching.attribution import attribution_patch
from interp.patching.exact import (
    ablate,
    exact_patch,
    patch_cells,
    patch_one_at_a_time,
    run_and_store,
)
from interp.patching.grids import make_grid
from interp.patching.inputs import PatchingError, prompt_pair, single_token
from interp.patching.metric import ce_metric, kl_metric, logit_diff_metric, normalise
from interp.patching.tasks import induction_pair, make_task

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = {"atol": 1e-4, "rtol": 1e-5}
GROUND_TRUTH = {"L0 H3", "L1 H0", "L1 H1", "L1 H2", "L1 H3"}


@pytest.fixture(autouse=True)
def quiet_tqdm(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")  # TransformerLens's patching loops show tqdm bars


@pytest.fixture(scope="module")
def default():
    from interp.models import load_model

    return load_model(device="cpu")


def _pair(n_pairs=2, n_pos=7, seed=0, vocab=300):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(3, vocab, (n_pairs, n_pos), generator=g)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(3, vocab, (n_pairs,), generator=g)
    corrupt[:, 4] = torch.randint(3, vocab, (n_pairs,), generator=g)
    return clean, corrupt


def _tl(model, clean, corrupt, metric):
    """TransformerLens's three grids on the same bridge, with its scalar metric (pair mean)."""
    _, cache = model.run_with_cache(clean)

    def tl_metric(logits):
        return metric(logits).mean()

    return {
        "resid": tl_patching.get_act_patch_resid_pre(model, corrupt, cache, tl_metric),
        "heads": tl_patching.get_act_patch_attn_head_out_all_pos(model, corrupt, cache, tl_metric),
        "mlp": tl_patching.get_act_patch_mlp_out(model, corrupt, cache, tl_metric),
    }


def test_exact_equals_transformer_lens_on_tiny_models(model):
    clean, corrupt = _pair()
    metric = logit_diff_metric(torch.tensor([5, 9]), torch.tensor([7, 11]))
    theirs = _tl(model, clean, corrupt, metric)
    for grid, want in theirs.items():
        ours = exact_patch(model, clean, corrupt, metric, grid)
        assert ours.values.shape == want.shape
        torch.testing.assert_close(ours.values, want.float().cpu(), **TOL)


@pytest.mark.slow
def test_exact_equals_transformer_lens_on_the_default_model(default):
    # Short prompts: TransformerLens runs 16 x 7 + 64 + 16 x 7 = 288 forward passes here.
    a, b, mask = induction_pair(2, 3)
    metric = ce_metric(a, mask)
    theirs = _tl(default, a, b, metric)
    for grid, want in theirs.items():
        torch.testing.assert_close(exact_patch(default, a, b, metric, grid).values, want, **TOL)


@pytest.mark.parametrize(
    ("grid", "by_position"),
    [("resid", True), ("attn", True), ("mlp", False), ("heads", False), ("heads", True)],
)
def test_folded_equals_one_at_a_time_and_any_chunking(model, grid, by_position):
    clean, corrupt = _pair(n_pos=5)
    metric = logit_diff_metric(torch.tensor([5, 9]), torch.tensor([7, 11]))
    g = make_grid(model, grid, clean.shape[1], by_position)
    _, acts = run_and_store(model, clean, g.hooks())
    sources = {lay: acts[g.hook(lay)] for lay in range(g.n_layers)}
    reference = patch_one_at_a_time(model, corrupt, sources, g, metric)
    seen = []
    folded = patch_cells(model, corrupt, sources, g, metric, memory_mb=1e9)
    tiny = patch_cells(  # a budget below one row: one patch per pass, and it still runs
        model, corrupt, sources, g, metric, memory_mb=1e-6, on_progress=lambda d, t: seen.append(d)
    )
    torch.testing.assert_close(folded, reference, **TOL)
    torch.testing.assert_close(tiny, reference, **TOL)
    assert seen == list(range(1, len(g.cells()) + 1))


def _no_hooks_left(model) -> bool:
    points = set(model.hook_dict.values())
    fwd = all(not hp.fwd_hooks and not hp._forward_hooks for hp in points)
    return fwd and all(not hp.bwd_hooks and not hp._backward_hooks for hp in points)


def test_no_hooks_left_behind_when_a_patch_raises(model):
    clean, corrupt = _pair()
    good = logit_diff_metric(5, 7)

    def boom(logits, pairs):
        raise RuntimeError("boom inside a patched pass")

    bad = type(good)("boom", boom)
    for run in (
        lambda: exact_patch(model, clean, corrupt, bad, "heads"),
        lambda: attribution_patch(model, clean, corrupt, bad, "resid", steps=2),
        lambda: ablate(model, clean, bad, "mlp", kind="zero"),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            run()
        assert _no_hooks_left(model)
        assert all(p.requires_grad for p in model.parameters())
    before = model(corrupt)
    exact_patch(model, clean, corrupt, good, "resid")
    torch.testing.assert_close(model(corrupt), before)


def test_ig_completeness_at_the_embedding(model):
    """At layer 0's resid_pre (the embeddings themselves, the path IG integrates along), IG
    sums to metric(clean) - metric(corrupt): the completeness axiom, up to the midpoint rule."""
    if model.cfg.positional_embedding_type == "standard":
        pytest.skip("GPT-2's resid_pre 0 adds position embeddings that IG does not interpolate")
    clean, corrupt = _pair()
    metric = logit_diff_metric(torch.tensor([5, 9]), torch.tensor([7, 11]))
    ig = attribution_patch(model, clean, corrupt, metric, "resid", steps=64)
    total = float(ig.effect[0].sum())
    assert total == pytest.approx(ig.clean - ig.corrupt, rel=1e-3, abs=1e-4)


def test_attribution_tracks_exact_on_name_stories(default):
    """First-order estimates agree with exact patching on the default model (rank and value)."""
    task = make_task(default, "names", n=4)
    for grid, floor in (("heads", 0.95), ("resid", 0.9)):
        exact = exact_patch(default, task.clean, task.corrupt, task.metric, grid)
        attr = attribution_patch(default, task.clean, task.corrupt, task.metric, grid)
        assert attr.clean == pytest.approx(exact.clean) and attr.corrupt == pytest.approx(
            exact.corrupt
        )
        assert _pearson(exact.effect, attr.effect) > floor


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def _top5(result) -> set[str]:
    return {label for label, _ in result.top(5)}


def test_induction_heads_rank_first_by_patching_and_ablation(default):
    """The card's ground truth: L0H3 (previous-token head) and the four heads of block 1
    (induction heads) are the five heads that matter on repeated random tokens."""
    task = make_task(default, "induction", n=4)
    clean, corrupt, metric = task.clean, task.corrupt, task.metric
    assert _top5(exact_patch(default, clean, corrupt, metric, "heads")) == GROUND_TRUTH
    for kind in ("mean", "resample"):
        result = ablate(default, clean, metric, "heads", kind=kind, corrupt=corrupt)
        assert _top5(result) == GROUND_TRUTH, kind
        assert result.top(1)[0][0] == "L0 H3"  # no previous-token head, no induction at all
    assert (
        _top5(attribution_patch(default, clean, corrupt, metric, "heads", steps=4)) == GROUND_TRUTH
    )


def test_metrics_and_normalisation_closed_forms():
    logits = torch.randn(3, 4, 10)
    targets = torch.randint(0, 10, (3, 4))
    mask = torch.tensor([[True, False, True]] * 3)
    ce = ce_metric(targets, mask)(logits)
    logp = logits.log_softmax(-1)
    want = -(logp[:, 0].gather(-1, targets[:, 1:2]) + logp[:, 2].gather(-1, targets[:, 3:4])) / 2
    torch.testing.assert_close(ce, want.squeeze(-1))
    assert kl_metric(logits, -1)(logits).abs().max() < 1e-6
    other = torch.randn(3, 4, 10)
    p, q = logits[:, 1].softmax(-1), other[:, 1].softmax(-1)
    torch.testing.assert_close(kl_metric(logits, 1)(other), (p * (p / q).log()).sum(-1))
    torch.testing.assert_close(
        normalise(torch.tensor([2.0, 5.0, 8.0]), 8.0, 2.0), torch.tensor([0.0, 0.5, 1.0])
    )
    torch.testing.assert_close(normalise(torch.tensor([3.0]), 0.0, 3.0), torch.tensor([0.0]))
    with pytest.raises(PatchingError, match="cannot be normalised"):
        normalise(torch.tensor([1.0]), 2.0, 2.0)


def test_bad_input_errors(default):
    with pytest.raises(PatchingError, match=r"clean \d+ tokens .*corrupt \d+ tokens.*align"):
        prompt_pair(default, "Rose went home,", "Rose and Paul went home,")
    a, b = prompt_pair(default, "Rose went home,", "Rose and Paul went home,", align="left")
    assert a.shape == b.shape and a[0, 0] == default.tokenizer.pad_token_id
    with pytest.raises(PatchingError, match=r"' Rosemary' is \d tokens .* not one"):
        single_token(default, " Rosemary")
    clean, corrupt, _ = induction_pair(1, 3)
    with pytest.raises(PatchingError, match="unknown grid 'neurons'; valid grids: resid"):
        exact_patch(default, clean, corrupt, logit_diff_metric(5, 7), "neurons")
    with pytest.raises(PatchingError, match="unknown task 'ioi'; valid tasks: names"):
        make_task(default, "ioi")


def test_edge_attribution_is_the_first_order_term_of_exact_edge_patching(model):
    """EAP is d/d(scale) of exact edge patching at scale 0: exact(scale=0.01)/0.01 matches it
    to ~1% (curvature and fp32 noise); at scale 1 the two still rank edges alike."""
    from interp.patching.edges import edge_attribution, exact_edges

    clean, corrupt = _pair()
    metric = logit_diff_metric(torch.tensor([5, 9]), torch.tensor([7, 11]))
    eap = edge_attribution(model, clean, corrupt, metric)
    small = exact_edges(model, clean, corrupt, metric, scale=1e-2)
    full = exact_edges(model, clean, corrupt, metric)
    ok = ~torch.isnan(eap.scores)
    assert torch.equal(ok, ~torch.isnan(full.scores)) and ok.sum() == 118  # 3 layers x 4 heads
    biggest = float(eap.scores[ok].abs().max())
    torch.testing.assert_close(small.scores[ok] / 1e-2, eap.scores[ok], atol=0.03 * biggest, rtol=0)
    assert _pearson(eap.scores[ok], full.scores[ok]) > 0.85
    assert not model.cfg.use_attn_in  # the bridge switch is restored


def test_exact_edge_from_the_last_mlp_equals_patching_that_mlp(model):
    """The last MLP's only reader is the logits, so patching that one edge is patching the MLP's
    output at every position (an independent path: `exact_patch` on the mlp grid)."""
    from interp.patching.edges import exact_edges

    clean, corrupt = _pair()
    metric = logit_diff_metric(torch.tensor([5, 9]), torch.tensor([7, 11]))
    edges = {(s, r): v for s, r, v in exact_edges(model, clean, corrupt, metric).edges()}
    node = exact_patch(model, clean, corrupt, metric, "mlp", by_position=False)
    last = model.cfg.n_layers - 1
    assert edges[(f"M{last}", "logits")] == pytest.approx(float(node.effect[last]), abs=1e-4)
