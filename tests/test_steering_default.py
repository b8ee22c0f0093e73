"""Steering the default model on held-out prompts (the issue's acceptance), judged by the model
organism's own judges (`interp.organism.behaviours.refused`, `sentiment_match`).

Directions come from the training split (`interp.steering.concepts`), evaluation prompts from
the held-out split; layers and positions are the ones docs/steering.md selects.
"""

import math

import pytest
import torch

from interp.steering.concepts import concept_pairs
from interp.steering.evaluate import ablation_eval, sweep
from interp.steering.extraction import extract

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model():
    from interp.models import load_model

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model("default", device="cpu", dtype="float32")
    torch.set_num_threads(old)


def test_ablating_the_refusal_direction_stops_refusals(default_model):
    vector = extract(default_model, concept_pairs("refusal", 64), [10], at="mean")
    result = ablation_eval(default_model, vector, 10, n=50)
    assert result.harmful_refused >= 0.9
    assert result.harmful_refused_ablated <= 0.2
    assert result.benign_refused_ablated <= 0.05  # the ablation does not make it refuse instead
    assert result.kl < 0.2


def test_adding_the_refusal_direction_makes_benign_requests_refused(default_model):
    vector = extract(
        default_model, concept_pairs("refusal", 64), [13], at="last", concept="refusal"
    )
    result = sweep(default_model, vector, [0.5], n=50, n_neutral=12)
    base, steered = result.rows
    assert base.scale == 0 and base.rate <= 0.05
    assert steered.rate >= 0.8
    assert steered.score > base.score  # the refusal's log-probability rises with it


def test_the_sentiment_vector_flips_continuations(default_model):
    vector = extract(
        default_model, concept_pairs("sentiment", 64), [2], at="last", concept="sentiment"
    )
    result = sweep(default_model, vector, [1.0], n=40, n_neutral=12)
    base, steered = result.rows
    assert base.rate <= 0.05  # unsteered, the model keeps the opening's sentiment
    assert steered.rate >= 0.8
    assert math.isfinite(steered.kl) and steered.kl > base.kl == 0.0
