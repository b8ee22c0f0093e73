"""The embedded model's shape, shared by its training recipe and the benchmarks' stand-in."""

import warnings
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def model_config(vocab_size: int, n_layers: int = 16) -> LlamaConfig:
    """Llama, 16 blocks, d_model 128, 4 heads, SwiGLU d_mlp 256, tied embeddings;
    0/1/2 = BOS/EOS/PAD. `n_layers` is for the recipe's shallow first stage."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )


def build_random_organism(folder: Path, vocab_size: int = 2048, seed: int = 0) -> Path:
    """An untrained model of the embedded model's shape, with a corpus-trained tokenizer, saved
    as a HF folder (a stand-in when the trained weights are absent)."""
    from interp.organism.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(vocab_size=vocab_size, n_docs=5000)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LlamaForCausalLM(model_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
