"""Generation over the bridge with a KV cache, interventions applied at the right positions.

`generate(model, prompt, interventions)` is greedy (or sampled) generation over the bridge with a
KV cache, with interventions applied at the right absolute positions ("prompt", "generated").
TransformerLens's own `model.generate` works too (after the fix below), but does not tell hooks
where a cached step is, so position selections would count from each step's new token.

Why `route_kv_cache`: with transformers >= 5.24 the HF decoder layers pass the KV cache to their
attention module as `cache=` (the `past_key_values` name is deprecated), but TransformerBridge's
attention reimplementation (`AttentionBridge._update_kv_cache`, transformer_lens 3.9) reads only
`past_key_values` / `layer_past`. The cache then stays empty: the prompt's keys and values are
never stored, each cached decoding step attends to its own token alone, and
`model.generate(...)` degenerates ("Assistant: I I I I"). `interp.models.load_model` installs a forward
pre-hook on each attention bridge that passes `cache` on as `past_key_values` too.
"""

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError
from interp.interventions import Hooks, generation_step, intervene

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def _cache_as_past_key_values(module: Any, args: tuple, kwargs: dict) -> tuple | None:
    cache = kwargs.get("cache")
    if cache is None or kwargs.get("past_key_values") is not None:
        return None
    return args, {**kwargs, "past_key_values": cache}


def route_kv_cache(model: "TransformerBridge") -> "TransformerBridge":
    """Make the bridge's attention modules store and read HF's KV cache (see the module
    docstring); idempotent, and a no-op where HF still passes `past_key_values`."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    for module in model.modules():
        installed = _cache_as_past_key_values in module._forward_pre_hooks.values()
        if isinstance(module, AttentionBridge) and not installed:
            module.register_forward_pre_hook(_cache_as_past_key_values, with_kwargs=True)
    return model


@dataclass(frozen=True)
class Generation:
    """What `generate` returns: `tokens` [batch, prompt_len + new] (prompt first; rows that
    stopped at EOS are padded with the pad token), and `text`, each row's continuation decoded
    without special tokens."""

    tokens: Int[Tensor, "batch total"]
    prompt_len: int
    text: list[str]


def _prompt_tokens(model: Any, prompt: str | Sequence[str] | Tensor) -> Tensor:
    if isinstance(prompt, Tensor):
        if prompt.dtype.is_floating_point or prompt.ndim not in (1, 2):
            raise InterpError(f"prompt tokens must be int [pos] or [batch, pos], got {prompt!r}")
        return (prompt if prompt.ndim == 2 else prompt[None]).to(model.cfg.device)
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    rows = [model.to_tokens(text)[0] for text in texts]
    if len({len(r) for r in rows}) != 1:
        raise InterpError(
            f"the prompts tokenize to different lengths {[len(r) for r in rows]}; generate "
            "takes prompts of equal length (no padding): pass them one at a time"
        )
    return torch.stack(rows).to(model.cfg.device)


def _next_logits(model: Any, tokens: Tensor, prompt_len: int, cache: Any) -> Tensor:
    """[batch, vocab] logits after `tokens`, feeding only the tokens not yet in `cache`."""
    if cache is None:
        with generation_step(0, prompt_len):
            return model(tokens, return_type="logits", use_cache=False)[:, -1]
    offset = cache.get_seq_length()
    forward = inspect.signature(model.original_model.forward).parameters
    name = "cache" if "cache" in forward else "past_key_values"  # renamed in transformers 5.24
    with generation_step(offset, prompt_len):
        logits = model(tokens[:, offset:], return_type="logits", use_cache=True, **{name: cache})
    if cache.get_seq_length() != tokens.shape[1]:
        raise InterpError(
            f"the KV cache holds {cache.get_seq_length()} positions after a forward pass over "
            f"{tokens.shape[1]}: this model's attention does not fill it; pass use_cache=False"
        )
    return logits[:, -1]


def _pick(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def generate(
    model: "TransformerBridge",
    prompt: str | Sequence[str] | Int[Tensor, "batch pos"],
    interventions: Hooks = (),
    max_new_tokens: int = 20,
    *,
    use_cache: bool = True,
    stop_at_eos: bool = True,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> Generation:
    """Generate with `interventions` applied (as `intervene` takes them) at every forward pass.

    Greedy when `temperature` is 0, else sampled from softmax(logits / temperature). With
    `use_cache` the prompt runs once and each new token alone, with HF's KV cache; without, the
    whole sequence runs at every step. Either way position selections count from the start of
    the sequence ("generated" is every position from the prompt's length on). Strings are
    tokenized with `model.to_tokens` (BOS as the model's default); several prompts must have
    the same length. A row that emits EOS is padded from then on; generation stops when all
    rows have.
    """
    if max_new_tokens < 0 or temperature < 0:
        raise InterpError("max_new_tokens and temperature must be >= 0")
    route_kv_cache(model)
    tokens = _prompt_tokens(model, prompt)
    prompt_len = tokens.shape[1]
    eos = model.tokenizer.eos_token_id if stop_at_eos else None
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else eos
    cache = _new_cache(model) if use_cache else None
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    with torch.no_grad(), intervene(model, interventions):
        for _ in range(max_new_tokens):
            new = _pick(_next_logits(model, tokens, prompt_len, cache), temperature, generator)
            if eos is not None:
                new = torch.where(finished, pad, new)
                finished |= new == eos
            tokens = torch.cat([tokens, new[:, None]], dim=1)
            if finished.all():
                break
    text = model.tokenizer.batch_decode(tokens[:, prompt_len:], skip_special_tokens=True)
    return Generation(tokens, prompt_len, text)


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.original_model.config)
