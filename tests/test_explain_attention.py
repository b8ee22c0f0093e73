"""Attention entropy, pattern scores and head classes: closed forms, HF's own eager attention,
and the default model's documented heads (docs/organism.md: L0H3 previous-token, all four heads
of block 1 induction), checked causally by ablation through interp.interventions."""

import math

import pytest
import torch

from interp.explain import (
    attention_patterns,
    entropy,
    head_hooks,
    head_report,
    induction_accuracy,
    repeated_tokens,
)
from interp.interventions import intervene, mean_ablate, store, zero_ablate

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTH = 32
INDUCTION = [(1, 0), (1, 1), (1, 2), (1, 3)]


@pytest.fixture(scope="module")
def lm():
    from interp.models import load_model

    return load_model("default", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def report(lm):
    return head_report(lm, length=LENGTH, batch=8, seed=0)


def test_entropy_closed_forms():
    """Uniform over the visible keys is 1, one key is 0, and a hand-computed case."""
    q = 6
    uniform = torch.tril(torch.ones(q, q)) / torch.arange(1, q + 1)[:, None]
    assert entropy(uniform).item() == pytest.approx(1.0, abs=1e-6)
    assert entropy(torch.eye(q)).item() == pytest.approx(0.0, abs=1e-6)
    p = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.5, 0.25, 0.25]])
    h2 = 1.0  # log 2 / log 2
    h3 = (0.5 * math.log(2) + 2 * 0.25 * math.log(4)) / math.log(3)
    assert entropy(p).item() == pytest.approx((h2 + h3) / 2, abs=1e-6)


def test_classification_finds_exactly_the_documented_heads(report):
    assert report.classes["previous_token"] == [(0, 3)]
    assert report.classes["induction"] == INDUCTION
    assert report.labels()[(0, 3)] == ["previous_token"]


def test_scores_match_hf_eager_attention(lm, report):
    """The scores read through `store` equal the same diagonals of HF's own eager attention
    weights (output_attentions), an independent path to the patterns."""
    from transformers import AutoModelForCausalLM

    from interp.organism import WEIGHTS_DIR

    hf = AutoModelForCausalLM.from_pretrained(
        WEIGHTS_DIR, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tokens = repeated_tokens(2048, LENGTH, 8, seed=0, bos=0, first_id=3)
    with torch.no_grad():
        att = torch.stack(hf(tokens[:, :], output_attentions=True).attentions[:2])
    prev = torch.diagonal(att[0], offset=-1, dim1=-2, dim2=-1)[..., 1:].mean((0, -1))
    ind = torch.diagonal(att[1], offset=-(LENGTH - 1), dim1=-2, dim2=-1)[..., 2:].mean((0, -1))
    torch.testing.assert_close(report.scores["previous_token"][0], prev, atol=1e-4, rtol=0)
    torch.testing.assert_close(report.scores["induction"][1], ind, atol=1e-4, rtol=0)
    sink = att[:, :, :, 1:, 0].mean((1, -1))
    torch.testing.assert_close(report.scores["sink"][:2], sink, atol=1e-4, rtol=0)


def test_reading_patterns_changes_nothing(lm):
    """Storing every layer's pattern leaves the logits bit for bit as a plain run's."""
    tokens = repeated_tokens(2048, 8, 2, seed=3)
    with torch.no_grad():
        plain = lm(tokens)
        held = {}
        with intervene(
            lm, {f"blocks.{i}.attn.hook_pattern": store(held, str(i)) for i in range(16)}
        ):
            hooked = lm(tokens)
    assert torch.equal(plain, hooked) and len(held) == 16
    patterns = attention_patterns(lm, tokens, layers=[0])
    torch.testing.assert_close(patterns[0].sum(-1), torch.ones(2, 4, 17))


def test_ablating_the_induction_heads_destroys_induction(lm, report):
    """Zero- or mean-ablating the heads classified as induction heads takes second-copy top-1
    accuracy from ~1 to ~0; ablating as many heads of other classes leaves it intact."""
    tokens = repeated_tokens(2048, LENGTH, 8, seed=7, bos=0, first_id=3)
    clean = induction_accuracy(lm, tokens, LENGTH)
    heads = report.classes["induction"]
    zeroed = induction_accuracy(lm, tokens, LENGTH, head_hooks(heads, zero_ablate))
    # the mean of hook_z over unrepeated random text, per position and head
    held = {}
    plain = torch.randint(3, 2048, (16, 2 * LENGTH + 1), generator=torch.Generator().manual_seed(9))
    with torch.no_grad(), intervene(lm, {"blocks.1.attn.hook_z": store(held, "z")}):
        lm(plain)
    mean = held["z"].mean(0)  # [pos, head, d_head]

    def mean_of_heads(heads):
        return mean_ablate(mean[:, heads], heads=heads)

    meaned = induction_accuracy(lm, tokens, LENGTH, head_hooks(heads, mean_of_heads))
    others = report.classes["sink"][:4]
    control = induction_accuracy(lm, tokens, LENGTH, head_hooks(others, zero_ablate))
    assert clean > 0.95
    assert zeroed < 0.05 and meaned < 0.05
    assert control > 0.9
