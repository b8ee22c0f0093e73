"""What an explanation explains: a scalar of the next-token logits after a text, and the text as
the model's own tokens.

A `Target` names one next token (`" Mary"`), optionally a contrast token (`" John"`), and the
kind of score:

- "logprob": log p(token) = log_softmax(logits)[token] (`interp.metrics.token_logprob`);
- "logit": logits[token];
- with a contrast, always the logit difference logits[token] - logits[contrast]
  (`interp.metrics.logit_diff`);
- or `fn`, any function of the last position's logits [batch, vocab] -> [batch].

`prepare(model, text, target)` tokenises once (BOS as the model prepends it) and checks the
input; every explainer then works on those token ids, never on strings again.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.explain.errors import ExplainError
from interp.metrics import logit_diff, token_logprob

ScoreOfLogits = Callable[[Float[Tensor, "batch vocab"]], Float[Tensor, " batch"]]


@dataclass(frozen=True)
class Target:
    """The scalar explained: see the module docstring."""

    token: str | None = None
    contrast: str | None = None
    kind: Literal["logprob", "logit"] = "logprob"
    fn: ScoreOfLogits | None = None

    def __post_init__(self) -> None:
        if (self.token is None) == (self.fn is None):
            raise ExplainError("a Target takes exactly one of token= (e.g. ' Mary') or fn=")
        if self.kind not in ("logprob", "logit"):
            raise ExplainError(f"unknown target kind {self.kind!r}; valid: 'logprob', 'logit'")
        if self.contrast is not None and self.token is None:
            raise ExplainError("contrast= needs token= (the score is their logit difference)")

    def describe(self) -> str:
        if self.fn is not None:
            return getattr(self.fn, "__name__", "custom score")
        if self.contrast is not None:
            return f"logit[{self.token!r}] - logit[{self.contrast!r}]"
        return f"{'log p' if self.kind == 'logprob' else 'logit'}[{self.token!r}]"


@dataclass(frozen=True)
class Prepared:
    """A text as the model's tokens and the target as a function of the last logits.

    `prefix` holds the tokens kept fixed before the explained ones (BOS), `ids` the explained
    tokens [pos] (what SHAP, LIME and the gradients attribute to), `tokens` their strings.
    """

    prefix: Int[Tensor, " n_prefix"]
    ids: Int[Tensor, " pos"]
    tokens: list[str]
    score: ScoreOfLogits
    target: Target

    @property
    def full(self) -> Int[Tensor, "1 total"]:
        return torch.cat([self.prefix, self.ids])[None]


def single_token(model: Any, text: str, what: str = "target") -> int:
    """The id of `text` if it is exactly one token, else `ExplainError` listing its tokens."""
    if not text:
        raise ExplainError(f"the {what} is empty; pass one token such as ' Mary'")
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise ExplainError(
            f"the {what} {text!r} is {len(ids)} tokens {pieces}, not one; pass a single token "
            f"(mind the leading space: ' Mary', not 'Mary')"
        )
    return int(ids[0])


def max_positions(model: Any) -> int:
    """The longest context the model takes (its HF config, else the bridge's n_ctx)."""
    hf = getattr(getattr(model, "original_model", None), "config", None)
    value = getattr(hf, "max_position_embeddings", None) or getattr(hf, "n_positions", None)
    return int(value or model.cfg.n_ctx)


def score_of_logits(model: Any, target: Target) -> ScoreOfLogits:
    """The target as a function of the last position's logits [batch, vocab] -> [batch]."""
    if target.fn is not None:
        return target.fn
    tok = single_token(model, target.token or "")
    if target.contrast is not None:
        other = single_token(model, target.contrast, "contrast")
        return lambda logits: logit_diff(logits[:, None], tok, other)
    if target.kind == "logit":
        return lambda logits: logits[:, tok].float()
    return lambda logits: token_logprob(logits[:, None], tok)


def prepare(model: Any, text: str, target: Target) -> Prepared:
    """Tokenise `text` once (BOS prepended when the model does) and check it and the target."""
    if not isinstance(text, str) or not text.strip():
        raise ExplainError("the text is empty; pass the text whose next token is explained")
    # Not model.to_tokens: it truncates to the context silently.
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = model.tokenizer.bos_token_id
    prepend = bos is not None and getattr(model.cfg, "default_prepend_bos", True)
    full = torch.tensor(([bos] if prepend else []) + list(ids), dtype=torch.long)
    n_prefix = int(prepend)
    most = max_positions(model)
    if len(full) > most:
        raise ExplainError(
            f"the text is {len(full)} tokens, longer than the model's context of {most}; shorten it"
        )
    ids = full[n_prefix:]
    tokens = [model.tokenizer.decode([int(i)]) for i in ids]
    return Prepared(full[:n_prefix], ids, tokens, score_of_logits(model, target), target)
