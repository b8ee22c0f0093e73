"""Byte-level BPE tokenizer for the model organism, trained on its own corpus.

Special tokens have fixed ids: 0 = <|bos|>, 1 = <|eos|>, 2 = <|pad|>.
"""

import itertools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from interp.organism.corpus import iter_documents

SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>")


def train_tokenizer(vocab_size: int = 2048, n_docs: int = 60_000, seed: int = 0):
    """Train a byte-level BPE on `n_docs` training documents; returns a PreTrainedTokenizerFast."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    docs = itertools.islice(iter_documents("train", seed=seed), n_docs)
    tok.train_from_iterator(docs, trainer)
    bos, eos, pad = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, padding_side="left"
    )
