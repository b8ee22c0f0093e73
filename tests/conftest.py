"""Shared fixtures: tiny random GPT-2, Llama, Gemma 3 and Qwen2 models saved as local HF folders
(no downloads).

Each folder holds a 3-block model and a byte-level BPE tokenizer (vocab 300) trained on the
embedded corpus, with the embedded model's conventions: 0 = <|bos|>, 1 = <|eos|>, 2 = <|pad|>.
The `arch` fixture runs a test on GPT-2 and Llama; tests/test_architectures.py covers all four.

Gemma 3 (`Gemma3ForCausalLM`, text only) and Qwen2 (`Qwen2ForCausalLM`, also Qwen1.5/2.5) keep
what sets them apart at tiny size: Gemma's scaled and tied embedding, (1 + w) RMSNorms around
attention and MLP, q/k norms, a query scale that is not 1/sqrt(head_dim), and sliding-window
layers (window 8, shorter than the test contexts) beside a global one with its own RoPE base;
Qwen2's q/k/v biases with grouped-query attention. Parameters that HF initialises to a constant
(norm weights, biases) are perturbed there, so that a bridge or fast path that drops or
mis-maps one of them changes the output. A soft-capped Gemma 2 is built on request
(`tiny_gemma2_dir`).
"""

import os
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI runs the fault-injection suites on a fixed, reproducible set of examples; a developer's run
# draws new ones each time (no example database), to keep finding what CI would not.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|pad|>"]
N_LAYERS = 3


def train_tiny_tokenizer(texts: list[str]):
    """Byte-level BPE with BOS/EOS/PAD, wrapped as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos, eos, pad = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad
    )


ARCHS = ("gpt2", "llama", "gemma", "qwen")
"""Every tiny model in `tiny_dirs` / `tiny_models`, in seed order."""
SLIDING_WINDOW = 8


def _perturb_constant_inits(model: torch.nn.Module, std: float = 0.1) -> None:
    """Add noise to the parameters HF initialises to a constant (norm weights, biases)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                param.add_(std * torch.randn_like(param))


def _hf_model(arch: str, vocab: int):
    from transformers import (
        Gemma2Config,
        Gemma2ForCausalLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    ids = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}
    if arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab, n_positions=64, n_embd=32, n_layer=N_LAYERS, n_head=4, **ids
        )
        return GPT2LMHeadModel(cfg)
    shape = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": N_LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        **ids,
    }
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**shape))
    gemma = {
        "head_dim": 8,
        "query_pre_attn_scalar": 16,  # scores scaled by 1/4, not 1/sqrt(head_dim)
        "sliding_window": SLIDING_WINDOW,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    }
    if arch == "gemma":
        model = Gemma3ForCausalLM(Gemma3TextConfig(**shape, **gemma))
    elif arch == "gemma2":  # not in ARCHS: the `tiny_gemma2_dir` fixture builds it on request
        # Soft caps at the scale of these tiny models' scores and logits, so that they bite.
        caps = {"attn_logit_softcapping": 0.5, "final_logit_softcapping": 0.3}
        model = Gemma2ForCausalLM(Gemma2Config(**shape, **gemma, **caps))
    elif arch == "qwen":
        model = Qwen2ForCausalLM(Qwen2Config(**shape))  # head_dim = 32 / 4 = 8
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; known: {ARCHS}")
    _perturb_constant_inits(model)
    return model


def _save_tiny(arch: str, folder: Path, tokenizer, seed: int) -> Path:
    torch.manual_seed(seed)
    model = _hf_model(arch, len(tokenizer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """{arch: folder} for each of `ARCHS`, each a saved model + tokenizer."""
    from interp.organism.corpus import documents

    tokenizer = train_tiny_tokenizer(documents(300, seed=123))
    root = tmp_path_factory.mktemp("tiny_models")
    # gpt2 and llama keep seeds 0 and 1
    return {arch: _save_tiny(arch, root / arch, tokenizer, seed) for seed, arch in enumerate(ARCHS)}


@pytest.fixture(scope="session")
def tiny_gemma2_dir(tiny_dirs, tmp_path_factory) -> Path:
    """A tiny Gemma 2 (`Gemma2ForCausalLM`: soft-capped attention scores and logits, otherwise
    shaped like the Gemma 3 one) with the same tokenizer; built only for the tests that ask."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["gemma"])
    return _save_tiny("gemma2", tmp_path_factory.mktemp("tiny_gemma2") / "gemma2", tokenizer, 4)


@pytest.fixture(scope="session")
def tiny_models(tiny_dirs):
    """{arch: bridge} for each of `ARCHS`, on CPU in float32, loaded once per session."""
    from interp.models import load_model

    return {arch: load_model(str(path), device="cpu") for arch, path in tiny_dirs.items()}


@pytest.fixture(params=["gpt2", "llama"])
def arch(request) -> str:
    """GPT-2 and Llama only, so that tests using it do not multiply; see test_architectures.py."""
    return request.param


@pytest.fixture
def model(tiny_models, arch):
    return tiny_models[arch]


@pytest.fixture
def tokens() -> torch.Tensor:
    """A fixed batch [4, 16] of non-special token ids."""
    return torch.randint(3, 300, (4, 16), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    small float64 SAE tests run no slower, and avoid oversubscription stalls on a shared machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
