"""Model-side metrics as pure functions of logits, each with its formula.

Logits are [batch, pos, vocab] and log p = log_softmax(logits) over vocab. Every metric casts to
float32 before any arithmetic, so bf16 logits give float32 results. Next-token metrics score the
prediction made at position t for token t+1 and return [batch, pos-1]: the last position
predicts a token outside the context, so it is dropped.

Shapes are annotated with jaxtyping and checked on entry: a wrong rank, mismatched shapes, a
non-integer token id or one outside [0, vocab) raise a ValueError naming the shapes and what is
expected. Each is a plain function of tensors, so patching and evaluation can take one as their
metric argument.
"""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def _check_logits(name: str, logits: Tensor, min_pos: int = 1) -> None:
    """ValueError unless `logits` is a floating [batch, pos, vocab] with at least min_pos pos."""
    if logits.ndim != 3 or not logits.is_floating_point():
        raise ValueError(
            f"{name} expects floating logits [batch, pos, vocab], "
            f"got {logits.dtype} of shape {tuple(logits.shape)}"
        )
    if logits.shape[1] < min_pos:
        raise ValueError(
            f"{name} needs at least {min_pos} positions (a next-token prediction needs the token "
            f"after it), got logits of shape {tuple(logits.shape)}"
        )


def _check_ids(name: str, ids: Tensor, vocab: int) -> None:
    """ValueError unless `ids` are integer token ids in [0, vocab)."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name} expects integer token ids, got {ids.dtype}")
    # One reduction and a sync, cheap beside a forward pass; an out-of-range id would otherwise
    # be a device-side assert on CUDA that names nothing.
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(
            f"{name}: token ids must lie in [0, {vocab}) for a vocab of {vocab}, "
            f"got ids in [{ids.min().item()}, {ids.max().item()}]"
        )


def _check_mask(name: str, mask: Tensor, shape: tuple[int, ...]) -> Tensor:
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"{name} expects a mask of the tokens' shape [batch, pos] = {list(shape)}, "
            f"got {list(mask.shape)}"
        )
    return mask.bool()


def next_token_mask(mask: Bool[Tensor, "batch pos"]) -> Bool[Tensor, "batch pos-1"]:
    """valid[b, t] = mask[b, t] and mask[b, t+1]: the prediction at t for token t+1 counts only
    when both its context's last token and its target are real (not padding).

    `mask` is an attention mask (bool or 0/1 ints), True for real tokens.
    """
    if mask.ndim != 2 or mask.shape[1] < 2:
        raise ValueError(f"next_token_mask expects [batch, pos >= 2], got {list(mask.shape)}")
    mask = mask.bool()
    return mask[:, :-1] & mask[:, 1:]


def next_token_ce(
    logits: Float[Tensor, "batch pos vocab"],
    tokens: Int[Tensor, "batch pos"],
    mask: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos-1"]:
    """CE[b, t] = -log p(tokens[b, t+1] | tokens[b, :t+1]), t < pos-1, in nats (float32), where
    log p(v | tokens[b, :t+1]) = log_softmax(logits[b, t])[v].

    With an attention `mask` [batch, pos], predictions that
    `next_token_mask(mask)` rules out are set to 0 (whatever their logits, inf included); average
    with `masked_mean(ce, next_token_mask(mask))`, not `.mean()`.
    """
    _check_logits("next_token_ce", logits, min_pos=2)
    if tuple(tokens.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"next_token_ce expects tokens [batch, pos] = {list(logits.shape[:2])} to match "
            f"logits [batch, pos, vocab] = {list(logits.shape)}, got tokens {list(tokens.shape)}"
        )
    _check_ids("next_token_ce", tokens, logits.shape[-1])
    # The same float ops as sae_eval's original, so held-out CE is unchanged bit for bit.
    logp = logits[:, :-1].float().log_softmax(-1)
    ce = -logp.gather(-1, tokens[:, 1:, None].long()).squeeze(-1)
    if mask is None:
        return ce
    valid = next_token_mask(_check_mask("next_token_ce", mask, tuple(tokens.shape)))
    return ce.masked_fill(~valid, 0.0)


def next_token_kl(
    logits_p: Float[Tensor, "batch pos vocab"],
    logits_q: Float[Tensor, "batch pos vocab"],
    mask: Bool[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos-1"]:
    """KL[b, t] = KL(p || q) = sum_v p(v) (log p(v) - log q(v)) of the next-token distributions
    p = softmax(logits_p[b, t]) and q = softmax(logits_q[b, t]), t < pos-1.

    In nats, float32, e.g. p the clean model and q the patched one. The last position is dropped
    to line up with `next_token_ce`. Logits must be finite: a -inf logit in p gives
    0 * -inf = NaN, as `torch.nn.functional.kl_div(..., log_target=True)` does. `mask` zeroes
    positions as in `next_token_ce`.
    """
    _check_logits("next_token_kl", logits_p, min_pos=2)
    if logits_p.shape != logits_q.shape:
        raise ValueError(
            f"next_token_kl expects logits_p and logits_q of one shape [batch, pos, vocab], "
            f"got {list(logits_p.shape)} and {list(logits_q.shape)}"
        )
    _check_logits("next_token_kl", logits_q, min_pos=2)
    logp = logits_p[:, :-1].float().log_softmax(-1)
    logq = logits_q[:, :-1].float().log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    if mask is None:
        return kl
    valid = next_token_mask(_check_mask("next_token_kl", mask, tuple(logits_p.shape[:2])))
    return kl.masked_fill(~valid, 0.0)


def masked_mean(values: Float[Tensor, "*shape"], mask: Bool[Tensor, "*shape"]) -> Float[Tensor, ""]:
    """sum_i mask_i values_i / sum_i mask_i, a float32 scalar; NaN when the mask selects nothing,
    as the mean of an empty tensor. Masked-out values never enter the sum, NaN or inf included."""
    if values.shape != mask.shape:
        raise ValueError(
            f"masked_mean expects values and mask of one shape, "
            f"got {list(values.shape)} and {list(mask.shape)}"
        )
    mask = mask.bool()
    return values.float().masked_fill(~mask, 0.0).sum() / mask.sum()


def _at_position(name: str, logits: Tensor, position: int | Tensor) -> Float[Tensor, "batch vocab"]:
    """logits[b, position] per row; `position` is one int or one index per row [batch]."""
    _check_logits(name, logits)
    batch, pos = logits.shape[:2]
    if isinstance(position, Tensor):
        if position.shape != (batch,):
            raise ValueError(
                f"{name} expects position as an int or a tensor [batch] = [{batch}], "
                f"got a tensor of shape {list(position.shape)}"
            )
        if position.is_floating_point() or position.dtype == torch.bool:
            raise ValueError(f"{name} expects integer positions, got {position.dtype}")
        if position.numel() and (position.min() < -pos or position.max() >= pos):
            raise ValueError(
                f"{name}: positions must lie in [-{pos}, {pos}) for logits of shape "
                f"{list(logits.shape)}, got [{position.min().item()}, {position.max().item()}]"
            )
        rows = torch.arange(batch, device=logits.device)
        return logits[rows, position.to(logits.device).long()]
    if isinstance(position, bool) or not isinstance(position, int) or not -pos <= position < pos:
        raise ValueError(f"{name}: position must be an int in [-{pos}, {pos}), got {position!r}")
    return logits[:, position]


def _pick(name: str, logits_bv: Tensor, ids: int | Tensor) -> Float[Tensor, " batch"]:
    """logits_bv[b, ids[b]] as float32; an int id is used for every row."""
    batch, vocab = logits_bv.shape
    if not isinstance(ids, Tensor):
        if isinstance(ids, bool) or not isinstance(ids, int):
            raise ValueError(
                f"{name} expects token ids as an int or a tensor [batch] = [{batch}], "
                f"got {type(ids).__name__}"
            )
        ids = torch.full((batch,), ids, dtype=torch.long)
    if ids.shape != (batch,):
        raise ValueError(
            f"{name} expects token ids as an int or a tensor [batch] = [{batch}], "
            f"got a tensor of shape {list(ids.shape)}"
        )
    _check_ids(name, ids, vocab)
    ids = ids.to(logits_bv.device).long()
    return logits_bv.gather(-1, ids[:, None]).squeeze(-1).float()


def logit_diff(
    logits: Float[Tensor, "batch pos vocab"],
    correct: Int[Tensor, " batch"] | int,
    incorrect: Int[Tensor, " batch"] | int,
    position: Int[Tensor, " batch"] | int = -1,
) -> Float[Tensor, " batch"]:
    """LD[b] = logits[b, position, correct[b]] - logits[b, position, incorrect[b]], in float32.

    The IOI-style patching metric (e.g. the indirect object's logit minus the subject's) at the
    last position by default; pass position [batch] when prompts end at different positions.
    """
    at = _at_position("logit_diff", logits, position)
    return _pick("logit_diff", at, correct) - _pick("logit_diff", at, incorrect)


def token_logprob(
    logits: Float[Tensor, "batch pos vocab"],
    target: Int[Tensor, " batch"] | int,
    position: Int[Tensor, " batch"] | int = -1,
) -> Float[Tensor, " batch"]:
    """log p[b] = log_softmax(logits[b, position])[target[b]], in float32 (nats)."""
    logp = _at_position("token_logprob", logits, position).float().log_softmax(-1)
    return _pick("token_logprob", logp, target)


def token_prob(
    logits: Float[Tensor, "batch pos vocab"],
    target: Int[Tensor, " batch"] | int,
    position: Int[Tensor, " batch"] | int = -1,
) -> Float[Tensor, " batch"]:
    """p[b] = softmax(logits[b, position])[target[b]] = exp(token_logprob), in float32."""
    probs = _at_position("token_prob", logits, position).float().softmax(-1)
    return _pick("token_prob", probs, target)
