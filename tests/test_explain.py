"""Explainers (interp.explain) against independent references: closed forms, brute force, HF's
own model, and the default model's planted heads (docs/organism.md)."""

import numpy as np
import pytest
import torch

from interp.explain import (
    ExplainError,
    RowScorer,
    Target,
    explain_gradient,
    explain_ig,
    explain_lime,
    explain_shap,
    lime_weights,
    mask_rows,
    pack,
    prepare,
    shap_values,
)
from interp.explain.masking import REMOVED, unpack
from interp.metrics import logit_diff, token_logprob

pytestmark = pytest.mark.usefixtures("one_thread")

IOI = "When Mary and John went to the store, John gave a drink to"
MARY_JOHN = Target(" Mary", contrast=" John")


@pytest.fixture(scope="module")
def lm():
    from interp.models import load_model

    return load_model("default", device="cpu", dtype="float32")


def _direct_scores(lm, token_rows: list[list[int]], target: Target) -> torch.Tensor:
    """The target on each token list run alone (no padding, no batching, full logits)."""
    out = []
    for row in token_rows:
        with torch.no_grad():
            logits = lm(torch.tensor([row]))
        if target.contrast is not None:
            ids = [
                lm.tokenizer(t, add_special_tokens=False)["input_ids"][0]
                for t in (target.token, target.contrast)
            ]
            out.append(logit_diff(logits, ids[0], ids[1]))
        else:
            tok = lm.tokenizer(target.token, add_special_tokens=False)["input_ids"][0]
            out.append(token_logprob(logits, tok))
    return torch.cat(out)


# --- masking ------------------------------------------------------------------------------------


def test_masking_round_trips_exactly():
    """Every mask gives back exactly the kept ids in order (removal) or the ids with the
    baseline in place of masked ones, and the rows unpack to those very ids."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 2048, (13,), generator=gen)
    masks = torch.rand(300, 13, generator=gen) < 0.5
    prefix = torch.tensor([0])
    removed = mask_rows(ids, masks, None)
    tokens, last = pack(removed, prefix, pad=2)
    for m, got in zip(masks, unpack(tokens, last, 1), strict=True):
        assert got == ids[m].tolist()
    assert (tokens[:, 0] == 0).all()
    based = mask_rows(ids, masks, 2)
    assert torch.equal(based, torch.where(masks, ids, torch.tensor(2)))
    tokens, last = pack(based, prefix, pad=2)
    assert (last == 13).all() and torch.equal(tokens[:, 1:], based)
    assert (removed == REMOVED).sum() == (~masks).sum()


def test_row_scorer_equals_each_row_run_alone(lm):
    """Padding, sorting by length, deduplication and batching change no score."""
    prepared = prepare(lm, IOI, MARY_JOHN)
    gen = torch.Generator().manual_seed(1)
    masks = torch.rand(12, len(prepared.ids), generator=gen) < 0.6
    masks[3] = masks[2]  # a duplicate row
    scorer = RowScorer(lm, prepared, batch_size=5)
    for baseline in (None, 2):
        rows = mask_rows(prepared.ids, masks, baseline)
        got = scorer.scores(rows)
        expected = _direct_scores(
            lm, [[0] + [t for t in r.tolist() if t != REMOVED] for r in rows], MARY_JOHN
        )
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert scorer.evaluations == 24 and scorer.forward_rows == 22


# --- closed form: a linear toy model ------------------------------------------------------------


def _linear_toy():
    ids = torch.tensor([5, 7, 9, 11, 13, 17, 19, 23])
    w = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -1.0, 2.0, -0.25])

    def score(rows):  # f(rows) = 0.3 + sum_j w_j [token j kept]
        return ((np.asarray(rows) == ids.numpy()[None]) * w).sum(1) + 0.3

    return ids, w, score


@pytest.mark.parametrize("method", ["partition", "permutation"])
@pytest.mark.parametrize("baseline", [None, 2])
def test_shap_recovers_linear_coefficients(method, baseline):
    """For an additive model the Shapley (and Owen) value of token j is its coefficient."""
    ids, w, score = _linear_toy()
    values, base, full = shap_values(ids, score, baseline, method)
    np.testing.assert_allclose(values, w, atol=1e-9)
    assert base == pytest.approx(0.3) and full == pytest.approx(0.3 + w.sum())


def test_lime_recovers_linear_coefficients():
    """LIME's fit of an additive model: its coefficients, exactly with least squares, and within
    LIME's default ridge shrinkage (alpha 1 against a kernel weight sum in the hundreds)."""
    from sklearn.linear_model import LinearRegression

    ids, w, score = _linear_toy()
    exact, intercept, r2 = lime_weights(ids, score, None, 500, model_regressor=LinearRegression())
    np.testing.assert_allclose(exact, w, atol=1e-8)
    assert intercept == pytest.approx(0.3) and r2 == pytest.approx(1.0)
    ridge, _, r2 = lime_weights(ids, score, 2, 1000)
    np.testing.assert_allclose(ridge, w, atol=0.05)
    assert r2 > 0.99


# --- the default model --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["partition", "permutation"])
@pytest.mark.parametrize("baseline", [None, 2])
def test_shap_efficiency_on_default_model(lm, method, baseline):
    """sum(values) = f(x) - f(baseline), with both ends computed independently."""
    a = explain_shap(lm, IOI, MARY_JOHN, method, baseline, max_evals=200)
    prepared = prepare(lm, IOI, MARY_JOHN)
    n = len(prepared.ids)
    masked = [0] if baseline is None else [0] + [baseline] * n
    f_x, f_b = _direct_scores(lm, [prepared.full[0].tolist(), masked], MARY_JOHN).tolist()
    assert a.value == pytest.approx(f_x, abs=1e-4)
    assert a.base_value == pytest.approx(f_b, abs=1e-4)
    assert a.values.sum() == pytest.approx(f_x - f_b, abs=1e-4)
    assert a.tokens == [lm.tokenizer.decode([t]) for t in prepared.ids.tolist()]


def test_lime_on_default_model_ranks_the_names(lm):
    """LIME's fit is usable (R^2 reported) and, like SHAP, puts ' Mary' up and ' John' down."""
    a = explain_lime(lm, IOI, MARY_JOHN, baseline=2, num_samples=300)
    assert 0 < a.extra["score"] <= 1 and a.evaluations == 300
    assert a.values[1] > 0 > a.values[3]


def test_gradient_x_input_matches_hf_autograd(lm):
    """e . df/de from the hooked bridge equals the same product from HF's own model fed the
    embeddings directly (inputs_embeds), an independent autograd path."""
    a = explain_gradient(lm, IOI, MARY_JOHN)
    assert all(p.grad is None for p in lm.parameters())  # only the embeddings' gradient is taken
    hf = lm.original_model
    prepared = prepare(lm, IOI, MARY_JOHN)
    embeds = hf.get_input_embeddings()(prepared.full).detach().requires_grad_()
    logits = hf(inputs_embeds=embeds).logits
    mary, john = (
        lm.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Mary", " John")
    )
    (grad,) = torch.autograd.grad(logits[0, -1, mary] - logits[0, -1, john], embeds)
    expected = (grad[0, 1:] * embeds[0, 1:]).sum(-1)
    np.testing.assert_allclose(a.values, expected.detach().numpy(), atol=1e-4, rtol=1e-4)


def test_integrated_gradients_completeness(lm):
    """IG's values sum to f(x) - f(baseline) (within 3%: the quadrature error), and its
    baseline is SHAP's all-masked input (same f(baseline))."""
    ig = explain_ig(lm, IOI, MARY_JOHN, baseline=2, steps=32)
    prepared = prepare(lm, IOI, MARY_JOHN)
    f_b = _direct_scores(lm, [[0] + [2] * len(prepared.ids)], MARY_JOHN).item()
    assert ig.base_value == pytest.approx(f_b, abs=1e-4)
    gap = ig.values.sum() - (ig.value - ig.base_value)
    assert abs(gap) < 0.03 * abs(ig.value - ig.base_value)


def test_bad_input_is_one_clear_error(lm):
    with pytest.raises(ExplainError, match="empty"):
        prepare(lm, "  ", MARY_JOHN)
    with pytest.raises(ExplainError, match="is 3 tokens"):
        prepare(lm, IOI, Target(" Maryland"))
    with pytest.raises(ExplainError, match="contrast"):
        prepare(lm, IOI, Target(" Mary", contrast=" Jo hn"))
    with pytest.raises(ExplainError, match="longer than the model's context of 256"):
        prepare(lm, "a b " * 200, MARY_JOHN)
    with pytest.raises(ExplainError, match="exactly one of"):
        Target()


def test_custom_target_and_tiny_architectures(model):
    """On random tiny GPT-2 and Llama models, a user score function (logit of id 5 minus the mean
    logit) is explained, and SHAP stays efficient."""

    def centred(logits):
        return logits[:, 5] - logits.mean(-1)

    target = Target(fn=centred)
    a = explain_shap(model, "the cat sat on the mat", target, baseline=None, max_evals=100)
    prepared = prepare(model, "the cat sat on the mat", target)
    with torch.no_grad():
        ends = [model(prepared.full)[:, -1], model(prepared.prefix[None])[:, -1]]
    f_x, f_b = (centred(e).item() for e in ends)
    assert a.values.sum() == pytest.approx(f_x - f_b, abs=1e-4)
    assert a.target == "centred"


@pytest.mark.slow  # loads the model three more times (~30 s on the shared 2-core CPU)
def test_cli_writes_html_and_json_and_refuses_to_overwrite(lm, tmp_path):
    """`interp explain --method gradient` writes the library's own values and the top tokens;
    a second run into the same folder needs --force; bad input is one line, exit 2."""
    import json

    from typer.testing import CliRunner

    from interp.cli import app

    out = tmp_path / "ex"
    args = ["explain", "--text", IOI, "--target", " Mary", "--contrast", " John"]
    res = CliRunner().invoke(app, [*args, "--method", "gradient", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "explanation.json").read_text())
    expected = explain_gradient(lm, IOI, MARY_JOHN)
    got = next(a for a in data["attributions"] if a["method"] == "gradient")
    np.testing.assert_allclose(got["values"], expected.values, atol=1e-5)
    assert [a["method"] for a in data["attributions"]] == ["gradient", "ig"]
    assert "' John'" in res.output and (out / "explanation.html").stat().st_size > 100_000
    again = CliRunner().invoke(app, [*args, "--method", "gradient", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    bad = CliRunner().invoke(
        app, ["explain", "--text", IOI, "--target", " Maryland", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2 and "is 3 tokens" in bad.output
    bad = CliRunner().invoke(
        app,
        [
            "explain",
            "--text",
            IOI,
            "--target",
            " Mary",
            "--method",
            "shapley",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert bad.exit_code == 2 and "valid: shap, lime" in bad.output


def test_attribution_figure_puts_every_method_on_one_scale():
    """Each row is the method's values over its largest |value| (colours compare across
    methods, zmid 0, range [-1, 1]); the hover carries the raw values."""
    from interp.explain import Attribution, figures

    tokens = ["a", " b", " c"]
    attrs = [
        Attribution("x", tokens, [1, 2, 3], np.array([2.0, -4.0, 1.0]), 0.0, -1.0, "t"),
        Attribution("y", tokens, [1, 2, 3], np.array([0.5, 0.25, -0.1]), 0.0, 0.65, "t"),
    ]
    trace = figures.attributions_figure(attrs).data[0]
    np.testing.assert_allclose(trace.z, [[0.5, -1.0, 0.25], [1.0, 0.5, -0.2]])
    np.testing.assert_allclose(trace.customdata, [a.values for a in attrs])
    assert (trace.zmin, trace.zmid, trace.zmax) == (-1.0, 0, 1.0)
    assert list(trace.y) == ["x", "y"] and list(trace.text[0]) == tokens
