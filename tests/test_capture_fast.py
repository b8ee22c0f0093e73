"""The fast capture path (plain HF modules, sdpa attention) against the bridge's own hooks.

The bridge runs the same fp32 weights through eager, step-by-step attention; the fast path runs
HF's fused sdpa kernel. Both compute softmax(QK^T / sqrt(d)) V over the same causal positions,
but in a different order of floating-point operations, so activations agree to round-off only.
On the tiny random models (entries up to ~0.1) the largest difference measured was 1.5e-8.
`TOL` is the one `tests/test_capture.py` uses against `run_with_cache` (atol 1e-6, rtol 1e-5).
On the embedded trained model (entries up to ~11 at blocks.15) the largest difference measured
was 1.1e-5, 1.0e-6 of the largest entry: sixteen blocks of fp32 round-off (epsilon 1.2e-7),
grown by sharp attention patterns, and it falls on small entries too, where rtol does not
cover it. That test allows 1e-5 of the largest entry, still far below the error of a wrong
position, mask or module (1e-2 and up).
"""

import pytest
import torch

from interp.capture.core import activation_stream, capture, recording
from interp.capture.fast import fast_runner, has_active_hooks, runner_for
from interp.interventions import intervene
from interp.models import default_model_dir, load_model

TOL = {"atol": 1e-6, "rtol": 1e-5}
FAST_HOOKS = [
    "blocks.0.hook_resid_pre",
    "blocks.0.hook_resid_post",
    "blocks.1.hook_attn_out",
    "blocks.1.hook_mlp_out",
    "blocks.1.hook_resid_pre",
    "blocks.2.hook_resid_post",
]


def uses_fast_path(model, names) -> bool:
    return fast_runner(model, list(names), {}, True) is not None


@pytest.mark.parametrize("hook", FAST_HOOKS)
def test_fast_equals_run_with_cache_per_hook(model, tokens, hook):
    assert uses_fast_path(model, [hook])
    acts = capture(model, tokens, [hook])
    _, cache = model.run_with_cache(tokens, names_filter=[hook])
    torch.testing.assert_close(acts[hook], cache[hook], **TOL)


@pytest.mark.parametrize("stop_early", [True, False])
def test_fast_equals_bridge_path_all_hooks(model, tokens, stop_early):
    fast = capture(model, tokens, FAST_HOOKS, stop_early=stop_early)
    slow = capture(model, tokens, FAST_HOOKS, stop_early=stop_early, fast=False)
    assert list(fast) == FAST_HOOKS
    for name in FAST_HOOKS:
        torch.testing.assert_close(fast[name], slow[name], **TOL)


def test_fast_with_bos_and_special_tokens(model, tokens):
    # The bridge passes a token tensor to HF as given (no BOS added, no mask, default
    # positions); a BOS at position 0 and EOS inside a context must not change that.
    tokens = tokens.clone()
    tokens[:, 0] = model.tokenizer.bos_token_id
    tokens[:, 7] = model.tokenizer.eos_token_id
    hook = "blocks.2.hook_resid_post"
    _, cache = model.run_with_cache(tokens, names_filter=[hook])
    torch.testing.assert_close(capture(model, tokens, [hook])[hook], cache[hook], **TOL)


def n_torch_hooks(module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def test_fast_path_leaves_no_hooks(model, tokens):
    capture(model, tokens, FAST_HOOKS)  # first call builds the runner; HF may add its own hooks
    skeleton = runner_for(model).skeleton
    before = n_torch_hooks(skeleton), n_torch_hooks(model)
    capture(model, tokens, FAST_HOOKS)
    assert (n_torch_hooks(skeleton), n_torch_hooks(model)) == before
    assert not has_active_hooks(model)


def test_fast_path_shares_weights(model, tokens):
    # An in-place weight edit on the bridge is seen by the fast path (no stale copy).
    hook = "blocks.1.hook_resid_post"
    weight = next(model.original_model.base_model.parameters())
    before = capture(model, tokens, [hook])[hook].clone()
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(2.0)
        edited = capture(model, tokens, [hook])[hook]
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert not torch.allclose(edited, before)
    torch.testing.assert_close(edited, cache[hook], **TOL)


@pytest.mark.parametrize(
    "hooks", [["blocks.1.hook_resid_mid"], ["blocks.0.attn.hook_z"], ["hook_embed"]]
)
def test_other_hooks_take_bridge_path(model, tokens, hooks):
    assert not uses_fast_path(model, hooks)
    acts = capture(model, tokens, hooks)
    _, cache = model.run_with_cache(tokens, names_filter=hooks)
    torch.testing.assert_close(acts[hooks[0]], cache[hooks[0]], atol=1e-6, rtol=1e-5)


def test_active_intervention_takes_bridge_path(model, tokens):
    # A hook active on the bridge changes its forward pass; the fast path would skip it.
    hook = "blocks.1.hook_resid_post"

    def zero(activation, *, hook):
        return torch.zeros_like(activation)

    with intervene(model, [("blocks.0.hook_resid_post", zero)]):
        assert not uses_fast_path(model, [hook])
        acts = capture(model, tokens, [hook])
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
    torch.testing.assert_close(acts[hook], cache[hook], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(acts[hook], capture(model, tokens, [hook])[hook])


def test_recording_many_batches_fast(model):
    hook = "blocks.2.hook_resid_post"
    batches = [
        torch.randint(3, 300, (2, 8), generator=torch.Generator().manual_seed(s)) for s in range(3)
    ]
    with recording(model, [hook]) as run:
        for batch in batches:
            _, cache = model.run_with_cache(batch, names_filter=[hook])
            torch.testing.assert_close(run(batch)[hook], cache[hook], **TOL)


def test_activation_stream_fast_equals_bridge(model):
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]
    batches = [
        torch.randint(3, 300, (2, 8), generator=torch.Generator().manual_seed(s)) for s in range(4)
    ]
    kwargs = {"batch_tokens": 16, "buffer_tokens": 32, "seed": 1}
    fast = list(activation_stream(model, batches, hooks, **kwargs))
    slow = list(activation_stream(model, batches, hooks, fast=False, **kwargs))
    assert len(fast) == len(slow) > 0
    for a, b in zip(fast, slow, strict=True):
        for name in hooks:
            torch.testing.assert_close(a[name], b[name], **TOL)


@pytest.mark.skipif(
    not (default_model_dir() / "config.json").is_file(), reason="embedded model not shipped"
)
def test_fast_equals_bridge_on_embedded_model():
    # Trained weights give larger, less uniform activations than the random fixtures.
    model = load_model("default", device="cpu", dtype="float32")
    tokens = torch.randint(3, 2048, (2, 64), generator=torch.Generator().manual_seed(0))
    hooks = ["blocks.8.hook_resid_post", "blocks.15.hook_resid_post", "blocks.15.hook_mlp_out"]
    assert uses_fast_path(model, hooks)
    _, cache = model.run_with_cache(tokens, names_filter=hooks)
    acts = capture(model, tokens, hooks)
    for name in hooks:
        scale = cache[name].abs().max().item()
        torch.testing.assert_close(acts[name], cache[name], atol=1e-5 * scale, rtol=1e-5)


def test_hook_added_inside_recording_is_refused(model, tokens):
    hook = "blocks.1.hook_resid_post"
    with recording(model, [hook]) as run:
        run(tokens)
        with intervene(model, [("blocks.0.hook_resid_post", lambda a, *, hook: None)]):
            with pytest.raises(RuntimeError, match="fast=False"):
                run(tokens)


def test_fused_forward_runs_for_llama_only(model, arch):
    # The Llama fixtures run `interp.capture.fused_llama.forward`; GPT-2 runs HF's own modules.
    assert runner_for(model).fused == (arch == "llama")


@pytest.mark.parametrize("stop_early", [True, False])
def test_fused_forward_equals_hf_modules(tiny_models, tokens, stop_early):
    # Against the second implementation it replaces: HF's own Llama modules (sdpa attention)
    # on the same shared weights, via their forward hooks. The fixture has 4 query heads and
    # 2 key/value heads, so grouped-query attention is covered.
    model = tiny_models["llama"]
    runner = runner_for(model)
    fused = capture(model, tokens, FAST_HOOKS, stop_early=stop_early)
    runner.fused = False
    try:
        plain = capture(model, tokens, FAST_HOOKS, stop_early=stop_early)
    finally:
        runner.fused = True
    for name in FAST_HOOKS:
        torch.testing.assert_close(fused[name], plain[name], **TOL)


def _llama_folder(root, tokenizer_dir, **overrides):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    settings = dict(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    torch.manual_seed(5)
    LlamaForCausalLM(LlamaConfig(**settings | overrides)).save_pretrained(root)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(root)
    return str(root)


@pytest.mark.parametrize(
    "overrides",
    [
        {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0}},
        {"attention_bias": True},  # not the plain layout: HF's own modules run it
        {"head_dim": 8},  # head_dim * heads != hidden_size
    ],
)
def test_llama_variants_equal_run_with_cache(tiny_dirs, tmp_path, overrides, tokens):
    model = load_model(_llama_folder(tmp_path / "m", tiny_dirs["llama"], **overrides))
    assert runner_for(model).fused == ("attention_bias" not in overrides)
    hooks = ["blocks.0.hook_attn_out", "blocks.1.hook_resid_post"]
    _, cache = model.run_with_cache(tokens, names_filter=hooks)
    acts = capture(model, tokens, hooks)
    for name in hooks:
        torch.testing.assert_close(acts[name], cache[name], **TOL)


def test_fast_path_follows_a_replaced_parameter(tiny_models, tokens):
    # A weight replaced by a new Parameter (not edited in place) makes the runner rebuild.
    model = tiny_models["llama"]
    hook = "blocks.1.hook_resid_post"
    capture(model, tokens, [hook])
    attn = model.original_model.model.layers[0].self_attn
    old = attn.q_proj.weight
    attn.q_proj.weight = torch.nn.Parameter(old.detach() * 3.0)
    try:
        # the runner is rebuilt around the new tensor
        assert runner_for(model).skeleton.layers[0].self_attn.q_proj.weight is attn.q_proj.weight
        acts = capture(model, tokens, [hook])
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
    finally:
        attn.q_proj.weight = old
    torch.testing.assert_close(acts[hook], cache[hook], **TOL)
    assert not torch.allclose(acts[hook], capture(model, tokens, [hook])[hook])


def test_fused_forward_in_bfloat16(tiny_dirs, tokens):
    # bf16 weights: the fused pass rotates q and k in fp32; HF in bf16. Both round to bf16
    # (epsilon 7.8e-3) at every step, so they agree to a few bf16 steps of the largest entry.
    model = load_model(str(tiny_dirs["llama"]), dtype="bfloat16")
    assert runner_for(model).fused
    hook = "blocks.2.hook_resid_post"
    _, cache = model.run_with_cache(tokens, names_filter=[hook])
    got = capture(model, tokens, [hook])[hook]
    assert got.dtype == torch.bfloat16
    scale = cache[hook].float().abs().max().item()
    torch.testing.assert_close(got.float(), cache[hook].float(), atol=0.03 * scale, rtol=0.02)
