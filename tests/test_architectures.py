"""The toolkit on the architectures users bring: GPT-2, Llama, Gemma 3 and Qwen2, each checked
against HuggingFace's own model on the same folder (tests/conftest.py builds the tiny models).

- `load_model` gives HF's logits; `capture` at `blocks.1.hook_resid_post` gives HF's
  `hidden_states[2]` (index 0 is the embedding output, index i the output of layer i - 1; the
  last entry has the final norm applied, so it is not a resid_post).
- `generate` is HF's greedy `generate`, token for token, with and without the KV cache.
- `patch(source, rows=[0])` at a residual stream turns row 0's logits into the source run's and
  leaves the other rows' alone.
- `interp train-sae` runs end to end, and its `ce_clean` is HF's own next-token loss on the
  held-out contexts (Gemma and Qwen here; GPT-2 and Llama in test_train_sae.py).

References are HF models loaded with eager attention, as the bridge runs them. Tolerances are
float32 round-off: the bridge runs HF's own modules on HF's weights (it matched bit for bit when
this was written) and the fast capture path runs them with fused (sdpa) attention, whose sums
are ordered differently (2e-6 of activations of size ~7 on the Gemma model). 1e-5 absolute plus
1e-5 relative leaves room for that and stays far below what a dropped sliding window (> 1e-3)
or soft cap (> 1e-2) changes, which the guards below check the tiny models are built to show.
"""

import itertools
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from interp.capture.core import capture
from interp.cli import app
from interp.generation import generate
from interp.interventions import intervene, patch, store
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.source import contexts, text_source, train_contexts_used

ARCHS = ["gpt2", "llama", "gemma", "qwen"]
HF_CLASS = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "gemma": "Gemma3ForCausalLM",
    "qwen": "Qwen2ForCausalLM",
}
HOOK = "blocks.1.hook_resid_post"
TOL = {"atol": 1e-5, "rtol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")  # 2 threads on a shared CPU stall 10-50x


@pytest.fixture(params=ARCHS)
def name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def hf_models(tiny_dirs) -> dict:
    """HF's own model per folder, eager attention, float32; loaded on first use."""
    loaded: dict = {}

    def get(arch: str):
        if arch not in loaded:
            loaded[arch] = AutoModelForCausalLM.from_pretrained(
                tiny_dirs[arch], dtype=torch.float32, attn_implementation="eager"
            ).eval()
        return loaded[arch]

    return get


@pytest.fixture
def bridge(tiny_models, name):
    return tiny_models[name]


@pytest.fixture
def hf(hf_models, name):
    return hf_models(name)


def test_load_model_gives_hf_logits(bridge, hf, name, tokens):
    assert type(bridge.original_model).__name__ == HF_CLASS[name]
    param = next(bridge.parameters())
    assert param.device.type == "cpu" and param.dtype == torch.float32
    assert bridge.cfg.n_layers == 3 and bridge.cfg.d_model == 32
    with torch.no_grad():
        ours = bridge(tokens, return_type="logits")
        ref = hf(tokens).logits
    torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize("fast", [True, False])
def test_capture_gives_hf_hidden_states(bridge, hf, tokens, fast):
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states
    assert len(hidden) == 4  # embeddings, then one per layer
    if fast:
        acts = capture(bridge, tokens, [HOOK])  # the default path
    else:
        acts = capture(bridge, tokens, [HOOK], fast=False)
    torch.testing.assert_close(acts[HOOK], hidden[2], **TOL)
    embed = capture(bridge, tokens, ["blocks.0.hook_resid_pre"], fast=fast)
    torch.testing.assert_close(embed["blocks.0.hook_resid_pre"], hidden[0], **TOL)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_equals_hf(bridge, hf, use_cache):
    # BOS + 8 tokens, then 8 new ones: 17 positions, past Gemma's sliding window of 8.
    prompts = torch.randint(3, 300, (3, 9), generator=torch.Generator().manual_seed(5))
    prompts[:, 0] = bridge.tokenizer.bos_token_id
    with torch.no_grad():
        ref = hf.generate(
            prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=8, do_sample=False
        )
    ours = generate(bridge, prompts, max_new_tokens=8, use_cache=use_cache)
    # Both pad a row after its EOS with the pad token and stop when every row has ended.
    assert ours.prompt_len == 9
    assert ours.tokens.tolist() == ref.tolist()


def test_patching_a_row_gives_the_source_runs_logits(bridge, tokens):
    source_tokens = torch.randint(3, 300, tokens.shape, generator=torch.Generator().manual_seed(9))
    found: dict = {}
    with torch.no_grad():
        clean = bridge(tokens, return_type="logits")
        with intervene(bridge, {HOOK: store(found, "source")}):
            source = bridge(source_tokens, return_type="logits")
        with intervene(bridge, {HOOK: patch(found["source"], rows=[0])}):
            patched = bridge(tokens, return_type="logits")
    assert (source[0] - clean[0]).abs().max() > 1e-2  # the patch has something to change
    torch.testing.assert_close(patched[0], source[0], **TOL)
    for row in (1, 2, 3):  # untouched rows: bit-identical to the clean run
        assert torch.equal(patched[row], clean[row]), row


def test_gemma_sliding_window_is_exercised(tiny_dirs, hf_models, tokens):
    """Guard on the fixture: the Gemma model's window shapes its outputs on these inputs, so the
    checks above would catch a bridge or fast path that attended past it."""
    windowed = hf_models("gemma")
    assert windowed.config.sliding_window < tokens.shape[1]
    assert "full_attention" in windowed.config.layer_types  # and a global layer, own RoPE base
    unwindowed = AutoModelForCausalLM.from_pretrained(
        tiny_dirs["gemma"], dtype=torch.float32, attn_implementation="eager", sliding_window=64
    ).eval()
    with torch.no_grad():
        a, b = windowed(tokens).logits, unwindowed(tokens).logits
    window = windowed.config.sliding_window
    torch.testing.assert_close(a[:, :window], b[:, :window], **TOL)
    assert (a[:, window:] - b[:, window:]).abs().max() > 1e-3


@pytest.mark.parametrize("arch_name", ["gemma", "qwen"])
def test_train_sae_ce_clean_equals_hf_loss(tiny_dirs, tiny_models, hf_models, arch_name, tmp_path):
    folder, out = tiny_dirs[arch_name], tmp_path / "r"
    args = [
        "train-sae", "--model", str(folder), "--layer", "1", "--tokens", "2048",
        "--batch-tokens", "512", "--eval-tokens", "256", "--ctx-len", "32", "--batch-size", "8",
        "--expansion", "2", "--k", "4", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "saes" / HOOK / "metrics.json").read_text())
    cfg = TrainSAEConfig.from_dict(json.loads((out / "cfg.json").read_text()))
    start = train_contexts_used(cfg)
    assert metrics["eval_contexts_start"] == start
    n = math.ceil(cfg.eval_tokens / cfg.ctx_len)
    ctxs = contexts(tiny_models[arch_name], text_source(cfg), cfg.ctx_len)
    held_out = torch.stack(list(itertools.islice(ctxs, start, start + n)))
    assert held_out.shape == (n, 32) and (held_out[:, 0] == 0).all()  # BOS first
    with torch.no_grad():
        loss = hf_models(arch_name)(held_out, labels=held_out).loss.item()  # mean over all
    # float32 means over ~250 predictions: agreement to 1e-4 is rounding, not method.
    assert metrics["ce_clean"] == pytest.approx(loss, abs=1e-4)
    assert math.isfinite(metrics["explained_variance"]) and metrics["l0"] <= 4


# --- Gemma 2: soft caps, and an HF class that refuses sdpa --------------------------------------


@pytest.fixture(scope="module")
def gemma2(tiny_gemma2_dir):
    from interp.models import load_model

    bridge = load_model(str(tiny_gemma2_dir), device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(
        tiny_gemma2_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return bridge, hf


def test_gemma2_bridge_gives_hf_logits_activations_and_generation(gemma2, tokens):
    bridge, hf = gemma2
    assert type(bridge.original_model).__name__ == "Gemma2ForCausalLM"
    with torch.no_grad():
        out = hf(tokens, output_hidden_states=True)
        ours = bridge(tokens, return_type="logits")
        uncapped = AutoModelForCausalLM.from_pretrained(
            hf.name_or_path,
            dtype=torch.float32,
            attn_implementation="eager",
            attn_logit_softcapping=None,
            final_logit_softcapping=None,
        )(tokens).logits
    assert (uncapped - out.logits).abs().max() > 1e-2  # the caps are in play
    torch.testing.assert_close(ours, out.logits, **TOL)
    acts = capture(bridge, tokens, [HOOK], fast=False)
    torch.testing.assert_close(acts[HOOK], out.hidden_states[2], **TOL)
    prompts = tokens[:2, :9]
    with torch.no_grad():
        ref = hf.generate(
            prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=8, do_sample=False
        )
    assert generate(bridge, prompts, max_new_tokens=8).tokens.tolist() == ref.tolist()


def test_gemma2_default_capture_gives_hf_hidden_states(gemma2, tokens):
    bridge, hf = gemma2
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states
    acts = capture(bridge, tokens, [HOOK])
    torch.testing.assert_close(acts[HOOK], hidden[2], **TOL)
