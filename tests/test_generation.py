"""Generation through `load_model` against HuggingFace's own greedy `generate`, and interventions
during KV-cached generation against recomputing the whole sequence at every step.

With transformers 5.24 the bridge's attention ignored the KV cache (HF renamed its argument to
`cache`), so cached greedy generation repeated one token; `interp.generation.route_kv_cache` fixes it.
Token equality is exact: the bridge runs HF's own weights, and the cached and uncached paths
differ by fp32 round-off, far below the logit gaps of these greedy choices.
"""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp.errors import InterpError
from interp.generation import generate
from interp.interventions import Intervention, add_direction, intervene, mean_ablate, store
from interp.models import default_model_dir, load_model
from interp.organism import corpus

MAX_NEW = 12
pytestmark = pytest.mark.usefixtures("one_thread")  # 2 threads on a shared CPU stall 10-50x


@pytest.fixture(scope="module")
def default_model():
    return load_model("default", device="cpu")


@pytest.fixture(scope="module")
def default_hf():
    return AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32).eval()


def default_prompts() -> list[str]:
    """Held-out prompts for the planted behaviours: refusal, compliance, jailbreak, IOI, review."""
    rng = random.Random(0)
    return [
        "User: how do I pick a lock?\nAssistant:",
        corpus.chat_prompt(corpus.request(rng, "heldout", harmful=True)[0]),
        corpus.chat_prompt(corpus.request(rng, "heldout", harmful=False)[0]),
        corpus.chat_prompt(corpus.jailbreak_request(rng, "heldout")[0]),
        corpus.ioi_prompt(rng, "heldout")[0],
        corpus.review_opening(rng, "heldout")[0] + " It was",
    ]


def until_eos(row: torch.Tensor, prompt_len: int, eos: int) -> list[int]:
    """The generated tokens up to and including the first EOS (padding after it differs)."""
    out = []
    for t in row[prompt_len:].tolist():
        out.append(t)
        if t == eos:
            break
    return out


def hf_greedy(hf, tokens: torch.Tensor, max_new: int = MAX_NEW) -> torch.Tensor:
    with torch.no_grad():
        return hf.generate(
            tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=max_new, do_sample=False
        )


@pytest.mark.parametrize("use_cache", [True, False])
def test_default_model_greedy_equals_hf(default_model, default_hf, use_cache):
    eos = default_model.tokenizer.eos_token_id
    for prompt in default_prompts():
        tokens = default_model.to_tokens(prompt)
        expected = until_eos(hf_greedy(default_hf, tokens)[0], tokens.shape[1], eos)
        ours = generate(default_model, prompt, max_new_tokens=MAX_NEW, use_cache=use_cache)
        assert until_eos(ours.tokens[0], ours.prompt_len, eos) == expected, prompt
        bridge = default_model.generate(
            tokens, max_new_tokens=MAX_NEW, do_sample=False, verbose=False,
            use_past_kv_cache=use_cache,
        )  # fmt: skip
        assert until_eos(bridge[0], tokens.shape[1], eos) == expected, prompt


def test_the_refusal_bug_is_fixed(default_model):
    prompt = "User: how do I pick a lock?\nAssistant:"
    text = default_model.generate(prompt, max_new_tokens=12, do_sample=False, verbose=False)
    assert text == prompt + " I can't help with that."
    assert generate(default_model, prompt, max_new_tokens=12).text == [" I can't help with that."]


@pytest.mark.parametrize("use_cache", [True, False])
def test_tiny_models_greedy_equal_hf(model, tiny_dirs, arch, use_cache):
    hf = AutoModelForCausalLM.from_pretrained(
        tiny_dirs[arch], dtype=torch.float32, attn_implementation="eager"
    ).eval()
    prompts = torch.randint(3, 300, (3, 9), generator=torch.Generator().manual_seed(5))
    prompts[:, 0] = model.tokenizer.bos_token_id
    expected = hf_greedy(hf, prompts)
    for row in range(len(prompts)):  # one at a time, as HF's rows may stop at different EOS
        ours = generate(model, prompts[row], max_new_tokens=MAX_NEW, use_cache=use_cache)
        assert until_eos(ours.tokens[0], 9, 1) == until_eos(expected[row], 9, 1)


def test_cached_steps_give_the_full_forward_logits(model):
    # The root cause, at the logit level: random tiny models repeat tokens whether or not the
    # cache works, so token equality alone would not catch an empty cache there.
    from transformers import DynamicCache

    tokens = torch.randint(3, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    cache = DynamicCache(config=model.original_model.config)
    with torch.no_grad():
        full = model(tokens)
        first = model(tokens[:, :7], use_cache=True, cache=cache)
        assert cache.get_seq_length() == 7
        rest = [model(tokens[:, i : i + 1], use_cache=True, cache=cache) for i in range(7, 10)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-5, rtol=1e-5)


def greedy_recomputed(model, tokens: torch.Tensor, hooks: list, max_new: int) -> torch.Tensor:
    """Reference: the whole sequence through the model at every step, `hooks` applied with
    plain (absolute) position selections, argmax of the last position. No stopping at EOS."""
    with torch.no_grad(), intervene(model, hooks):
        for _ in range(max_new):
            tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def steering(model, layer: int = 4) -> tuple[str, torch.Tensor]:
    name = f"blocks.{min(layer, model.cfg.n_layers - 1)}.hook_resid_post"
    return name, torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("words", "scale"), [("generated", 8.0), ("prompt", 3.0)])
def test_positions_during_cached_generation_equal_recomputing(default_model, words, scale):
    model = default_model
    tokens = model.to_tokens("User: how do I pick a lock?\nAssistant:")
    n = tokens.shape[1]
    name, vec = steering(model)
    absolute = slice(n, None) if words == "generated" else slice(0, n)
    expected = greedy_recomputed(model, tokens, [(name, add_direction(vec, scale, absolute))], 8)
    iv = Intervention("add", name, {"direction": vec}, scale=scale, positions=words)
    cached = generate(model, tokens, [iv], max_new_tokens=8, stop_at_eos=False)
    uncached = generate(model, tokens, [iv], max_new_tokens=8, stop_at_eos=False, use_cache=False)
    assert torch.equal(cached.tokens, expected) and torch.equal(uncached.tokens, expected)
    clean = generate(model, tokens, max_new_tokens=8, stop_at_eos=False)
    assert not torch.equal(clean.tokens, expected)  # the steering changed the continuation


def test_absolute_positions_and_per_position_means_during_generation(default_model):
    model = default_model
    tokens = model.to_tokens("User: how do I pick a lock?\nAssistant:")
    n = tokens.shape[1]
    name, vec = steering(model, layer=2)
    mean = torch.randn(n + 8, model.cfg.d_model, generator=torch.Generator().manual_seed(2))

    def by_hand(a, *, hook):  # the full sequence is in view: plain indexing
        a = a.clone()
        a[:, [p for p in (n + 1, n + 3) if p < a.shape[1]]] += 8.0 * vec
        if n + 2 < a.shape[1]:
            a[:, n + 2] = mean[n + 2]
        return a

    expected = greedy_recomputed(model, tokens, [(name, by_hand)], 8)
    hooks = [(name, add_direction(vec, 8.0, [n + 1, n + 3])), (name, mean_ablate(mean, [n + 2]))]
    cached = generate(model, tokens, hooks, max_new_tokens=8, stop_at_eos=False)
    assert torch.equal(cached.tokens, expected)
    assert not torch.equal(generate(model, tokens, (), 8, stop_at_eos=False).tokens, expected)


def test_generation_sees_one_new_position_per_cached_step(model):
    seen = []
    tokens = torch.randint(3, 300, (2, 6), generator=torch.Generator().manual_seed(3))
    generate(model, tokens, [("blocks.0.hook_resid_post", lambda a, *, hook: seen.append(a.shape))],
             max_new_tokens=3, stop_at_eos=False)  # fmt: skip
    assert [s[:2] for s in seen] == [(2, 6), (2, 1), (2, 1)]


def test_generation_leaves_no_hooks_and_rejects_ragged_prompts(default_model):
    with pytest.raises(InterpError, match="different lengths"):
        generate(default_model, ["User: hi\nAssistant:", "User: how do I pick a lock?"])
    found = {}
    generate(default_model, "Hello", [("blocks.0.hook_resid_post", store(found, "x"))], 2)
    assert found and not any(hp.fwd_hooks for hp in default_model.hook_dict.values())
