"""Batched forward passes of a HuggingFace causal LM for evaluation: last-position logits,
greedy continuations, per-document loss and KL.

Prompts get the tokenizer's BOS in front (when it has one) and are left-padded, with position
ids counted from each prompt's first real token, so a padded row computes what it would alone.
Documents for loss and KL are right-padded (a causal model's real positions never see padding
that comes after them) and scored with `interp.metrics`.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.metrics import masked_mean, next_token_ce, next_token_kl, next_token_mask


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def pad_id(tokenizer: Any) -> int:
    """The id padding is written with (masked out, so any id works): PAD, else EOS, else 0."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return tid
    return 0


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, with the tokenizer's BOS in front when it has one."""
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    return [bos + tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def first_token(tokenizer: Any, word: str) -> int:
    """The first token of " word" (a word as it follows a space)."""
    return tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]


def left_padded(tokenizer: Any, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask) [n, width]: BOS + each text, left-padded."""
    ids = encode(tokenizer, texts)
    width = max(map(len, ids))
    pad = pad_id(tokenizer)
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = (torch.arange(width) >= torch.tensor([width - len(x) for x in ids])[:, None]).long()
    return input_ids, mask


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def last_logits(
    model: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int = 256
) -> Float[Tensor, "n vocab"]:
    """Logits (float32, CPU) at each prompt's last token."""
    out = []
    for chunk in _chunks(prompts, batch_size):
        input_ids, mask = left_padded(tokenizer, chunk)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        dev = _device(model)
        logits = model(
            input_ids=input_ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=position_ids.to(dev),
        ).logits
        out.append(logits[:, -1].float().cpu())
    return torch.cat(out)


@torch.inference_mode()
def greedy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 8,
    batch_size: int = 256,
) -> list[str]:
    """Greedy continuations (the text after each prompt, special tokens dropped)."""
    texts: list[str] = []
    dev = _device(model)
    for chunk in _chunks(prompts, batch_size):
        input_ids, mask = left_padded(tokenizer, chunk)
        out = model.generate(
            input_ids=input_ids.to(dev),
            attention_mask=mask.to(dev),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id(tokenizer),
            eos_token_id=tokenizer.eos_token_id,
        )
        new = out[:, input_ids.shape[1] :]
        texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    return texts


def _right_padded(tokenizer: Any, texts: Sequence[str], max_len: int) -> tuple[Tensor, Tensor]:
    ids = [x[:max_len] for x in encode(tokenizer, texts)]
    width = max(map(len, ids))
    pad = pad_id(tokenizer)
    tokens = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    return tokens, mask


def _per_row_mean(values: Tensor, valid: Tensor) -> Tensor:
    return torch.stack([masked_mean(v, m) for v, m in zip(values, valid, strict=True)])


@torch.inference_mode()
def document_losses(
    model: Any, tokenizer: Any, texts: Sequence[str], max_len: int = 128, batch_size: int = 64
) -> Float[Tensor, " n"]:
    """Mean next-token cross-entropy (nats per token) of each document, BOS in front, at most
    `max_len` tokens: `masked_mean(next_token_ce(logits, tokens, mask), next_token_mask(mask))`."""
    out = []
    dev = _device(model)
    for chunk in _chunks(texts, batch_size):
        tokens, mask = _right_padded(tokenizer, chunk, max_len)
        logits = model(input_ids=tokens.to(dev), attention_mask=mask.to(dev)).logits.cpu()
        ce = next_token_ce(logits, tokens, mask)
        out.append(_per_row_mean(ce, next_token_mask(mask)))
    return torch.cat(out)


@torch.inference_mode()
def document_kl(
    model: Any,
    baseline: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_len: int = 128,
    batch_size: int = 64,
) -> Float[Tensor, " n"]:
    """Mean next-token KL(baseline || model) (nats per token) of each document; both models read
    the same tokens, so they must share the tokenizer."""
    out = []
    for chunk in _chunks(texts, batch_size):
        tokens, mask = _right_padded(tokenizer, chunk, max_len)
        logits_p = baseline(
            input_ids=tokens.to(_device(baseline)), attention_mask=mask.to(_device(baseline))
        ).logits.cpu()
        logits_q = model(
            input_ids=tokens.to(_device(model)), attention_mask=mask.to(_device(model))
        ).logits.cpu()
        kl = next_token_kl(logits_p, logits_q, mask)
        out.append(_per_row_mean(kl, next_token_mask(mask)))
    return torch.cat(out)
