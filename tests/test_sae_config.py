"""SAEConfig and TrainConfig: JSON round trip, readable validation, the lr schedule."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sae.config import SAEConfig, TrainConfig
from sae.registry import ARCHITECTURES
from sae.schedule import lr_factor, sparsity_scale

sae_configs = st.builds(
    SAEConfig,
    arch=st.sampled_from(sorted(ARCHITECTURES)),
    d_in=st.integers(1, 64),
    d_sae=st.integers(64, 512),
    k=st.integers(1, 64),
    aux_k=st.none() | st.integers(1, 64),
    l1_coefficient=st.floats(0, 10),
    jumprelu_bandwidth=st.floats(1e-4, 1),
    dtype=st.sampled_from(["float32", "float64", "bfloat16"]),
    device=st.sampled_from(["auto", "cpu", "cuda:1"]),
    hook_name=st.text(max_size=20),
    hook_head_index=st.none() | st.integers(0, 16),
    context_size=st.none() | st.integers(1, 4096),
)
train_configs = st.builds(
    TrainConfig,
    total_tokens=st.integers(10_000, 10**9),
    batch_tokens=st.integers(1, 10_000),
    adam_betas=st.tuples(st.floats(0, 0.99), st.floats(0, 0.999)),
    lr_decay_fraction=st.floats(0, 1),
    seed=st.integers(0, 2**31),
)


@settings(max_examples=40, deadline=None)
@given(sae_configs)
def test_sae_config_round_trips_through_json(cfg):
    assert SAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@settings(max_examples=40, deadline=None)
@given(train_configs)
def test_train_config_round_trips_through_json(cfg):
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and isinstance(back.adam_betas, tuple)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "nope"}, "choose one of"),
        ({"arch": "topk", "k": 0}, "k must be"),
        ({"d_sae": 0}, "d_in and d_sae"),
        ({"jumprelu_bandwidth": 0.0}, "jumprelu_bandwidth"),
        ({"device": "tpu"}, "device must be"),
        ({"aux_k": 10**9}, "aux_k"),
    ],
)
def test_sae_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAEConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_tokens": 10, "batch_tokens": 100}, "less than one batch"),
        ({"lr": 0.0}, "lr must be"),
        ({"adam_betas": (0.9, 1.0)}, "adam_betas"),
        ({"total_tokens": 1000, "batch_tokens": 100, "lr_warmup_steps": 9}, "exceed total"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_unknown_field_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown field.*'lr_warmup'.*valid fields"):
        TrainConfig.from_dict({"lr_warmup": 3})


def test_resolved_aux_k_defaults_to_half_d_in():
    assert SAEConfig(d_in=64, d_sae=256).resolved_aux_k == 32
    assert SAEConfig(d_in=64, d_sae=16, k=4, aux_k=None).resolved_aux_k == 16


def test_lr_schedule_warmup_constant_and_linear_decay():
    cfg = TrainConfig(total_tokens=100, batch_tokens=10, lr_warmup_steps=2, lr_decay_fraction=0.2)
    factors = [lr_factor(s, cfg) for s in range(10)]
    # steps 0-1 warm up, 2-7 constant, the last ceil(0.2 * 10) = 2 decay linearly to 1/2.
    assert factors == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    cfg2 = TrainConfig(total_tokens=100, batch_tokens=10, lr_decay_fraction=0.5)
    assert [lr_factor(s, cfg2) for s in range(5, 10)] == [1.0, 0.8, 0.6, 0.4, 0.2]


def test_sparsity_warmup():
    cfg = TrainConfig(total_tokens=100, batch_tokens=10, sparsity_warmup_steps=4)
    assert [sparsity_scale(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
