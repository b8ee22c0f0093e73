"""A reward model as a probe: a linear head on one layer's activations (or an SAE's latents of
them), read at the last token of prompt + completion, trained on preference pairs with the
Bradley-Terry loss. It is RLHF's reward model, small enough to inspect: its weight is a
direction in the residual stream (or a weighting of SAE latents).

    P(chosen preferred) = sigmoid(r(chosen) - r(rejected)),   r(x) = w . h(x)

Fitted by L-BFGS (float64) on  mean_i softplus(-w . (h_c,i - h_r,i)) + l2/2 |w|^2 ; this is
logistic regression without intercept on the differences, labelled 1 (sklearn's
`LogisticRegression(fit_intercept=False, C=1/(2 l2 n))` on the differences and their negatives,
labelled 1 and 0, gives the same w). No intercept: a constant cancels in every difference.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from interp.align.dpo import pair_batch
from interp.align.errors import AlignError
from interp.align.pairs import PreferencePairs
from interp.interventions import intervene, store


@dataclass
class RewardProbe:
    """w ([features]) at `hook`; `sae`: an SAE folder whose latents are the features."""

    weight: Tensor
    hook: str
    sae: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Fit sizes, penalty, training and held-out pairwise accuracy."""

    def rewards(self, features: Tensor) -> Tensor:
        return features.double() @ self.weight.double()


@torch.no_grad()
def pair_features(
    model: Any, pairs: PreferencePairs, layer: int, sae: str | None = None, batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """([pairs, features] of chosen, of rejected): `blocks.layer.hook_resid_post` at the last
    token of prompt + completion (through `interp.interventions.store`), or an SAE's latents."""
    from interp.evals.monitor import sae_encoder

    pairs = pairs.tokenized(model.tokenizer)
    hook = f"blocks.{layer}.hook_resid_post"
    encode = sae_encoder(sae) if sae is not None else None
    pad = model.tokenizer.pad_token_id or 0
    out_c, out_r = [], []
    for start in range(0, len(pairs), batch_size):
        batch = pair_batch(pairs, range(start, min(start + batch_size, len(pairs))), pad)
        seen: dict[str, Tensor] = {}
        with intervene(model, {hook: store(seen, "h")}):
            model(batch.input_ids.to(model.cfg.device), return_type="logits")
        last = batch.attention_mask.sum(1) - 1
        h = seen["h"][torch.arange(len(last)), last.to(seen["h"].device)].float().cpu()
        if encode is not None:
            h = encode(h)
        c, r = h.chunk(2)
        out_c.append(c)
        out_r.append(r)
    return torch.cat(out_c), torch.cat(out_r)


def fit_bradley_terry(chosen: Tensor, rejected: Tensor, l2: float = 1e-3) -> Tensor:
    """w minimising mean softplus(-w . (chosen - rejected)) + l2/2 |w|^2 (L-BFGS, float64)."""
    if chosen.shape != rejected.shape or chosen.ndim != 2 or len(chosen) == 0:
        raise AlignError(
            f"need [pairs, features] for both sides, got {list(chosen.shape)} and "
            f"{list(rejected.shape)}"
        )
    if not l2 > 0:
        raise AlignError(f"l2 must be > 0, got {l2}")
    diff = (chosen - rejected).double()
    w = torch.zeros(diff.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w],
        max_iter=500,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(diff @ w)).mean() + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def pairwise_accuracy(weight: Tensor, chosen: Tensor, rejected: Tensor) -> float:
    """Share of pairs whose chosen answer gets the larger reward."""
    margin = (chosen.double() - rejected.double()) @ weight.double()
    return float((margin > 0).double().mean())


def train_reward_probe(
    model: Any,
    pairs: PreferencePairs,
    layer: int,
    *,
    heldout: PreferencePairs | None = None,
    l2: float = 1e-3,
    sae: str | None = None,
) -> RewardProbe:
    """Fit the probe on `pairs`; report pairwise accuracy on them and on `heldout` pairs."""
    c, r = pair_features(model, pairs, layer, sae)
    w = fit_bradley_terry(c, r, l2)
    info: dict[str, Any] = {
        "n_train": len(pairs),
        "l2": l2,
        "train_accuracy": pairwise_accuracy(w, c, r),
    }
    if heldout is not None and len(heldout):
        hc, hr = pair_features(model, heldout, layer, sae)
        info |= {"n_heldout": len(heldout), "heldout_accuracy": pairwise_accuracy(w, hc, hr)}
    return RewardProbe(w, f"blocks.{layer}.hook_resid_post", sae, info)
