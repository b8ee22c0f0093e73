"""Model-side metrics against values computed by hand, against torch.nn.functional, and against a
frozen copy of the formulas that interp.sae_eval used before they moved here."""

import math

import pytest
import torch
import torch.nn.functional as F

from interp import metrics

# Two-token vocab: logits [0, x] give p = [1, e^x] / (1 + e^x), so -log p(0) = log(1 + e^x) and
# -log p(1) = log(1 + e^-x). x = log 3 gives p = [1/4, 3/4]; x = 0 gives p = [1/2, 1/2].
LOG3 = math.log(3.0)


def _random_logits(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (3.0 * torch.randn(*shape, generator=g)).to(dtype)


def _random_tokens(batch: int, pos: int, vocab: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, pos), generator=g)


# Frozen copies of interp.sae_eval's formulas (next_token_ce, and the KL in _three_runs), so the
# held-out CE and KL stay the same bit for bit whichever module computes them.
def _reference_ce(logits, tokens):
    logp = logits[:, :-1].float().log_softmax(-1)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def _reference_kl(clean, spliced):
    logp_clean = clean[:, :-1].float().log_softmax(-1)
    logp_spliced = spliced[:, :-1].float().log_softmax(-1)
    return (logp_clean.exp() * (logp_clean - logp_spliced)).sum(-1)


def test_next_token_ce_by_hand():
    # Position 0 predicts token 1 from p = [1/4, 3/4]; position 1 predicts token 0 from [1/2, 1/2].
    logits = torch.tensor([[[0.0, LOG3], [0.0, 0.0], [5.0, -5.0]]])
    tokens = torch.tensor([[0, 1, 0]])
    ce = metrics.next_token_ce(logits, tokens)
    assert ce.shape == (1, 2)
    torch.testing.assert_close(ce, torch.tensor([[math.log(4 / 3), math.log(2.0)]]))


def test_next_token_ce_matches_cross_entropy():
    logits, tokens = _random_logits(3, 7, 11), _random_tokens(3, 7, 11)
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1), reduction="none"
    ).reshape(3, 6)
    # F.cross_entropy fuses log_softmax and nll_loss differently; float32 rounding only.
    torch.testing.assert_close(metrics.next_token_ce(logits, tokens), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_next_token_ce_and_kl_equal_sae_eval_formulas_bit_for_bit(dtype):
    logits, other = _random_logits(4, 9, 50, dtype=dtype), _random_logits(4, 9, 50, seed=2)
    tokens = _random_tokens(4, 9, 50)
    assert torch.equal(metrics.next_token_ce(logits, tokens), _reference_ce(logits, tokens))
    assert torch.equal(metrics.next_token_kl(logits, other), _reference_kl(logits, other))


def test_next_token_kl_by_hand():
    # KL([1/4, 3/4] || [1/2, 1/2]) = 1/4 log(1/2) + 3/4 log(3/2) = 3/4 log 3 - log 2; the last
    # position is dropped.
    p = torch.tensor([[[0.0, LOG3], [1.0, 2.0], [9.0, 0.0]]])
    q = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [0.0, 9.0]]])
    kl = metrics.next_token_kl(p, q)
    assert kl.shape == (1, 2)
    torch.testing.assert_close(kl, torch.tensor([[0.75 * LOG3 - math.log(2.0), 0.0]]))


def test_next_token_kl_matches_kl_div():
    p, q = _random_logits(3, 5, 13), _random_logits(3, 5, 13, seed=3)
    logp, logq = p[:, :-1].log_softmax(-1), q[:, :-1].log_softmax(-1)
    # kl_div(input, target) = target * (log target - input), i.e. KL(target || input).
    expected = F.kl_div(logq, logp, reduction="none", log_target=True).sum(-1)
    kl = metrics.next_token_kl(p, q)
    torch.testing.assert_close(kl, expected)
    assert (kl >= 0).all()
    assert torch.equal(metrics.next_token_kl(p, p), torch.zeros(3, 4))


def test_mask_zeroes_padded_predictions_and_masked_mean_skips_them():
    # Row 0 is right-padded after 3 tokens, row 1 is left-padded by one. The padded logits are
    # inf, which must not leak into the CE or its mean.
    logits = torch.tensor(
        [
            [[0.0, LOG3], [0.0, 0.0], [0.0, 0.0], [float("inf"), 0.0]],
            [[float("inf"), 0.0], [0.0, LOG3], [0.0, LOG3], [0.0, 0.0]],
        ]
    )
    tokens = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    valid = metrics.next_token_mask(mask)
    assert valid.tolist() == [[True, True, False], [False, True, True]]
    ce = metrics.next_token_ce(logits, tokens, mask)
    log2, log4_3 = math.log(2.0), math.log(4 / 3)
    torch.testing.assert_close(ce, torch.tensor([[log4_3, log2, 0.0], [0.0, log4_3, log4_3]]))
    mean = metrics.masked_mean(ce, valid)
    torch.testing.assert_close(mean, torch.tensor((3 * log4_3 + log2) / 4))
    kl = metrics.next_token_kl(logits, logits.flip(-1), mask.bool())
    assert kl.isfinite().all() and kl[0, 2] == 0 and kl[1, 0] == 0


def test_masked_mean_empty_mask_is_nan():
    assert metrics.masked_mean(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool)).isnan()


def test_logit_diff_and_token_probs_by_hand():
    logits = _random_logits(3, 4, 6)
    correct, incorrect = torch.tensor([1, 5, 0]), torch.tensor([2, 2, 3])
    rows = torch.arange(3)
    expected = logits[rows, -1, correct] - logits[rows, -1, incorrect]
    assert torch.equal(metrics.logit_diff(logits, correct, incorrect), expected)
    at_1 = logits[rows, 1, 4] - logits[rows, 1, 0]
    assert torch.equal(metrics.logit_diff(logits, 4, 0, position=1), at_1)
    # One position per row, as for prompts of different lengths.
    position = torch.tensor([0, 3, -2])
    per_row = logits[rows, position, correct] - logits[rows, position, incorrect]
    assert torch.equal(metrics.logit_diff(logits, correct, incorrect, position), per_row)

    # [0, log 3] at the last position: p = [1/4, 3/4].
    two = torch.tensor([[[7.0, -7.0], [0.0, LOG3]], [[0.0, 0.0], [LOG3, 0.0]]])
    torch.testing.assert_close(metrics.token_prob(two, 1), torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(
        metrics.token_logprob(two, torch.tensor([0, 0])),
        torch.tensor([-math.log(4.0), -math.log(4 / 3)]),
    )
    torch.testing.assert_close(metrics.token_prob(two, 0, position=0), torch.tensor([1.0, 0.5]))


def test_bf16_logits_give_float32_computed_from_the_float32_values():
    logits = _random_logits(2, 5, 7, dtype=torch.bfloat16)
    tokens, wide = _random_tokens(2, 5, 7), logits.float()
    pairs = [
        (metrics.next_token_ce(logits, tokens), metrics.next_token_ce(wide, tokens)),
        (metrics.next_token_kl(logits, logits.flip(0)), metrics.next_token_kl(wide, wide.flip(0))),
        (metrics.logit_diff(logits, 1, 2), metrics.logit_diff(wide, 1, 2)),
        (metrics.token_prob(logits, 3), metrics.token_prob(wide, 3)),
        (metrics.token_logprob(logits, 3), metrics.token_logprob(wide, 3)),
    ]
    for low, full in pairs:
        assert low.dtype == torch.float32
        assert torch.equal(low, full)


def test_bad_shapes_raise_naming_them():
    logits, tokens = torch.zeros(2, 4, 5), torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"logits \[batch, pos, vocab\], got .* shape \(4, 5\)"):
        metrics.next_token_ce(logits[0], tokens)
    with pytest.raises(ValueError, match=r"tokens \[batch, pos\] = \[2, 4\].* got tokens \[2, 3\]"):
        metrics.next_token_ce(logits, tokens[:, :3])
    with pytest.raises(ValueError, match="at least 2 positions"):
        metrics.next_token_ce(logits[:, :1], tokens[:, :1])
    with pytest.raises(ValueError, match=r"\[2, 4, 5\] and \[2, 4, 6\]"):
        metrics.next_token_kl(logits, torch.zeros(2, 4, 6))
    with pytest.raises(ValueError, match=r"mask of the tokens' shape .* got \[2, 3\]"):
        metrics.next_token_ce(logits, tokens, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"tensor \[batch\] = \[2\], got a tensor of shape \[3\]"):
        metrics.logit_diff(logits, torch.tensor([0, 1, 2]), 0)
    with pytest.raises(ValueError, match=r"tensor \[batch\] = \[2\], got a tensor of shape \[\]"):
        metrics.token_prob(logits, torch.tensor(1))
    with pytest.raises(ValueError, match=r"values and mask of one shape"):
        metrics.masked_mean(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool))


def test_bad_ids_and_positions_raise():
    logits, tokens = torch.zeros(2, 4, 5), torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\[0, 5\) .* got ids in \[0, 5\]"):
        metrics.next_token_ce(logits, tokens + torch.tensor([0, 0, 0, 5]))
    with pytest.raises(ValueError, match="integer token ids, got torch.float32"):
        metrics.next_token_ce(logits, tokens.float())
    with pytest.raises(ValueError, match=r"\[0, 5\) .* got ids in \[-1, -1\]"):
        metrics.token_logprob(logits, -1)
    with pytest.raises(ValueError, match="got float"):
        metrics.logit_diff(logits, 1.0, 2)
    with pytest.raises(ValueError, match=r"position must be an int in \[-4, 4\), got 4"):
        metrics.logit_diff(logits, 1, 2, position=4)
    with pytest.raises(ValueError, match=r"positions must lie in \[-4, 4\).* got \[0, 7\]"):
        metrics.token_prob(logits, 1, position=torch.tensor([0, 7]))
