"""Shared fixtures: tiny random GPT-2 and Llama models saved as local HF folders (no downloads).

Each folder holds a 3-block model and a byte-level BPE tokenizer (vocab 300) trained on the
embedded corpus, with the embedded model's conventions: 0 = <|bos|>, 1 = <|eos|>, 2 = <|pad|>.
"""

import warnings
from pathlib import Path

import pytest
import torch

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


def _hf_model(arch: str, vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    ids = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}
    if arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab, n_positions=64, n_embd=32, n_layer=N_LAYERS, n_head=4, **ids
        )
        return GPT2LMHeadModel(cfg)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        **ids,
    )
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """{"gpt2": folder, "llama": folder}, each a saved model + tokenizer."""
    from interp.organism.corpus import documents

    tokenizer = train_tiny_tokenizer(documents(300, seed=123))
    root = tmp_path_factory.mktemp("tiny_models")
    dirs = {}
    for seed, arch in enumerate(("gpt2", "llama")):
        torch.manual_seed(seed)
        model = _hf_model(arch, len(tokenizer))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save_pretrained(root / arch)
        tokenizer.save_pretrained(root / arch)
        dirs[arch] = root / arch
    return dirs


@pytest.fixture(scope="session")
def tiny_models(tiny_dirs):
    """{"gpt2": bridge, "llama": bridge} on CPU in float32, loaded once per session."""
    from interp.models import load_model

    return {arch: load_model(str(path), device="cpu") for arch, path in tiny_dirs.items()}


@pytest.fixture(params=["gpt2", "llama"])
def arch(request) -> str:
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
