"""interp.capture against TransformerLens's run_with_cache and HuggingFace's hidden states.

Both references run the same fp32 modules on the same tokens, so the captured tensors should
agree to round-off; `TOL` allows for a different order of floating-point operations only.
"""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

from interp.capture.core import (
    activation_stream,
    capture,
    iter_captures,
    keep_mask,
    rebatch,
    to_rows,
)
from interp.errors import HookNameError
from interp.interventions import intervene

TOL = {"atol": 1e-6, "rtol": 1e-5}
HOOKS = [
    "hook_embed",
    "blocks.0.hook_resid_post",
    "blocks.0.attn.hook_z",
    "blocks.1.hook_mlp_out",
    "blocks.1.hook_resid_mid",
]


def no_hooks_left(model) -> bool:
    return all(not hp.fwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize("stop_early", [True, False])
def test_capture_equals_run_with_cache(model, tokens, stop_early):
    acts = capture(model, tokens, HOOKS, stop_early=stop_early)
    _, cache = model.run_with_cache(tokens, names_filter=HOOKS)
    assert list(acts) == HOOKS
    for name in HOOKS:
        torch.testing.assert_close(acts[name], cache[name], **TOL)
    assert no_hooks_left(model)


def test_resid_post_equals_hf_hidden_states(model, tiny_dirs, arch, tokens):
    hf = AutoModelForCausalLM.from_pretrained(
        tiny_dirs[arch], dtype=torch.float32, attn_implementation="eager"
    )
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states
    # hidden[l + 1] is block l's output, except the last, which HF returns after the final norm.
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers - 1)]
    acts = capture(model, tokens, names)
    for layer, name in enumerate(names):
        torch.testing.assert_close(acts[name], hidden[layer + 1], **TOL)


def test_capture_stops_as_soon_as_every_hook_fired(model, tokens):
    calls = []

    def probe(name):
        return (name, lambda a, *, hook: calls.append(name))

    later = ["blocks.1.hook_mlp_out", "ln_final.hook_in", "unembed.hook_out"]
    with intervene(model, [probe(n) for n in later]):
        capture(model, tokens, ["blocks.0.hook_mlp_out"])  # stop_at_layer=1
        capture(model, tokens, ["blocks.1.hook_resid_mid"])  # stops inside block 1
        assert calls == []
        capture(model, tokens, ["blocks.2.hook_resid_post"])  # last block: no norm, no unembed
        assert calls == ["blocks.1.hook_mlp_out"]
        capture(model, tokens, ["blocks.0.hook_resid_post"], stop_early=False)
        assert calls == ["blocks.1.hook_mlp_out"] * 2 + later[1:]
    assert no_hooks_left(model)


def test_per_token_shape_is_required_for_batches(model, tokens):
    captures = iter_captures(model, [tokens], ["blocks.0.attn.hook_pattern"])
    with pytest.raises(HookNameError, match=r"not \[batch, pos, ...\]"):
        next(captures)
    with pytest.raises(HookNameError, match="did you mean"):
        iter_captures(model, [tokens], ["blocks.0.hook_resid_pst"])  # checked before any batch
    assert no_hooks_left(model)


def test_bos_mask_only_drops_position_zero():
    tokens = torch.tensor([[0, 5, 0, 7], [4, 0, 1, 2]])
    assert keep_mask(tokens, bos_id=0).tolist() == [False, True, True, True] + [True] * 4
    assert keep_mask(tokens, bos_id=None).all()
    acts = {"h": torch.arange(8.0).view(2, 4, 1)}
    assert to_rows(tokens, acts, 0, exclude_bos=True)["h"].flatten().tolist() == [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    ]


def _chunks(sizes, d=3):
    start = 0
    for n in sizes:
        rows = torch.arange(start, start + n, dtype=torch.float32)
        yield {"a": rows[:, None].expand(n, d).clone(), "b": -rows[:, None]}
        start += n


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    batch=st.integers(1, 16),
    extra=st.integers(0, 64),
    shuffle=st.booleans(),
)
def test_rebatch_emits_each_row_once_in_full_aligned_batches(sizes, batch, extra, shuffle):
    out = list(rebatch(_chunks(sizes), batch, shuffle=shuffle, buffer_tokens=batch + extra, seed=1))
    total = sum(sizes)
    assert all(b["a"].shape == (batch, 3) and b["b"].shape == (batch, 1) for b in out)
    assert len(out) == total // batch
    ids = torch.cat([b["a"][:, 0] for b in out]) if out else torch.zeros(0)
    assert torch.equal(torch.cat([b["b"][:, 0] for b in out]) if out else ids, -ids)  # aligned
    assert len(set(ids.tolist())) == len(ids)  # no row twice
    if not shuffle:
        assert ids.tolist() == list(range(len(ids)))  # order kept, only the tail dropped


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    batch=st.integers(1, 16),
    extra=st.integers(0, 64),
    shuffle=st.booleans(),
    stop=st.integers(0, 40),
)
def test_rebatch_resumes_from_its_state_with_the_same_batches(sizes, batch, extra, shuffle, stop):
    """Stop a stream after `stop` batches, save its state through safetensors, and restart from
    the chunks it had not read: the rest equals the uninterrupted stream's, batch for batch."""
    from safetensors.torch import load, save

    kw = {"shuffle": shuffle, "buffer_tokens": batch + extra, "seed": 3}
    whole = list(rebatch(_chunks(sizes), batch, **kw))
    first = rebatch(_chunks(sizes), batch, **kw)
    head = [b for _, b in zip(range(stop), first, strict=False)]
    saved = load(save(first.state_dict()))
    rest = itertools.islice(_chunks(sizes), int(saved["counters"][0]), None)
    tail = list(rebatch(rest, batch, **kw, state=saved))
    assert len(head) + len(tail) == len(whole)
    for got, want in zip(head + tail, whole, strict=True):
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_rebatch_shuffles_deterministically():
    def ids(seed):
        out = rebatch(_chunks([50] * 8), 10, shuffle=True, buffer_tokens=100, seed=seed)
        return torch.cat([b["a"][:, 0] for b in out]).tolist()

    assert ids(0) == ids(0) and ids(0) != ids(1)
    assert ids(0) != sorted(ids(0))
    with pytest.raises(ValueError, match="buffer_tokens >= batch_tokens"):
        rebatch([], 10, buffer_tokens=5)


def test_stream_equals_capture_rows(model, tokens):
    batches = [tokens, tokens.roll(1, dims=1)]
    hooks = ["blocks.1.hook_resid_post", "blocks.0.hook_mlp_out"]
    stream = list(
        activation_stream(model, batches, hooks, batch_tokens=16, shuffle=False, exclude_bos=False)
    )
    got = {h: torch.cat([b[h] for b in stream]) for h in hooks}
    for h in hooks:
        expected = torch.cat([capture(model, b, hooks)[h].reshape(-1, 32) for b in batches])
        torch.testing.assert_close(got[h], expected, **TOL)


def test_stream_drops_bos_and_shuffles(model, tokens):
    bos_tokens = tokens.clone()
    bos_tokens[:, 0] = model.tokenizer.bos_token_id
    hooks = ["blocks.0.hook_resid_post"]
    kept = list(activation_stream(model, [bos_tokens], hooks, batch_tokens=1, shuffle=False))
    assert len(kept) == bos_tokens.numel() - bos_tokens.shape[0]
    shuffled = activation_stream(
        model, itertools.repeat(bos_tokens, 4), hooks, batch_tokens=8, seed=2
    )
    rows = torch.cat([b[hooks[0]] for b in shuffled])
    reference = torch.cat([b[hooks[0]] for b in kept])
    # Each context's rows appear 4 times; as sets of rows the two streams agree.
    assert rows.shape[0] == 4 * reference.shape[0]
    key = lambda t: sorted(map(tuple, t.round(decimals=5).tolist()))  # noqa: E731
    assert key(rows) == key(reference.repeat(4, 1))
    assert no_hooks_left(model)
