"""BiPO (Cao et al. 2024, "Personalized Steering of Large Language Models: Versatile Steering
Vectors Through Bi-directional Preference Optimization", Algorithm 1): a steering vector v at one
layer, trained with the DPO objective while the model's weights stay frozen.

Each step draws d = +1 or -1 for its batch; the policy is the model with d * v added to the
output of block L (`blocks.L.hook_resid_post`, every position), the reference the unsteered
model, and the loss

    -mean log sigmoid(d * beta * [log pi_v(y_w|x)/pi(y_w|x) - log pi_v(y_l|x)/pi(y_l|x)])

(for d = -1 the vector is subtracted and chosen and rejected swap roles), so that +v moves the
model towards the chosen answers and -v away from them. v starts at 0 and is trained with AdamW.
v is added through `interp.interventions.add_direction` with v itself as the (learnable)
direction, so the trained vector, saved as a `SteeringVector` (method "bipo", absolute
convention), steers exactly as it was trained.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from interp.align.dpo import batch_rows, dpo_loss, pair_batch, sequence_logps
from interp.align.errors import AlignError
from interp.align.pairs import PreferencePairs
from interp.align.train_config import BiPOSettings
from interp.interventions import add_direction, intervene

OnStep = Callable[[int, int, dict[str, float]], None]


@dataclass
class BiPOResult:
    vector: Any
    """The trained `SteeringVector` (absolute convention: scale 1 adds v)."""
    history: list[dict[str, float]]
    seconds: float


def bridge_logps(model: Any, pairs: PreferencePairs, rows: Any, hooks: Any = ()) -> tuple:
    """(chosen, rejected) summed completion log-probs of a TransformerBridge with `hooks`."""
    pad = model.tokenizer.pad_token_id or 0
    batch = pair_batch(pairs, list(rows), pad)
    ids = batch.input_ids.to(model.cfg.device)
    with intervene(model, hooks):  # right padding: the causal mask keeps pads out of the rest
        logits = model(ids, return_type="logits")
    return sequence_logps(logits, ids, batch.completion_mask.to(ids.device)).chunk(2)


@torch.no_grad()
def margins(model: Any, pairs: PreferencePairs, hooks: Any = (), batch_size: int = 64) -> Tensor:
    """[pairs] log p(chosen) - log p(rejected) under `hooks` (e.g. a vector at a scale)."""
    out = []
    for start in range(0, len(pairs), batch_size):
        c, r = bridge_logps(model, pairs, range(start, min(start + batch_size, len(pairs))), hooks)
        out.append((c - r).cpu())
    return torch.cat(out)


def _step_sign(step: int, seed: int) -> int:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return 1 if torch.rand((), generator=g) < 0.5 else -1


def train_bipo(
    model: Any,
    pairs: PreferencePairs,
    cfg: BiPOSettings,
    *,
    model_id: str | None = None,
    on_step: OnStep | None = None,
) -> BiPOResult:
    """Train a BiPO vector on `model` (a TransformerBridge, frozen) from `pairs`."""
    from interp.steering.vector import SteeringVector

    blocks, width = int(model.cfg.n_layers), int(model.cfg.d_model)
    if not 0 <= cfg.layer < blocks:
        raise AlignError(f"layer {cfg.layer} is outside the model (valid layers 0..{blocks - 1})")
    pairs = pairs.tokenized(model.tokenizer).check()
    start = time.perf_counter()
    hook = f"blocks.{cfg.layer}.hook_resid_post"
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            ref_c, ref_r = (
                torch.cat(x)
                for x in zip(
                    *(
                        bridge_logps(model, pairs, range(s, min(s + 64, len(pairs))))
                        for s in range(0, len(pairs), 64)
                    ),
                    strict=True,
                )
            )
        v = torch.zeros(width, device=model.cfg.device, requires_grad=True)
        opt = torch.optim.AdamW([v], lr=cfg.lr, weight_decay=cfg.weight_decay)
        history = []
        for step in range(cfg.steps):
            rows = batch_rows(step, len(pairs), cfg.batch_size, cfg.seed)
            d = _step_sign(step, cfg.seed)
            pc, pr = bridge_logps(model, pairs, rows, {hook: add_direction(v, float(d))})
            rc, rr = ref_c[rows], ref_r[rows]
            out = (
                dpo_loss(pc, pr, rc, rr, cfg.beta) if d > 0 else dpo_loss(pr, pc, rr, rc, cfg.beta)
            )
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            history.append(out.metrics | {"d": float(d), "norm": float(v.detach().norm())})
            if on_step is not None:
                on_step(step + 1, cfg.steps, history[-1])
    finally:
        for p in frozen:
            p.requires_grad_(True)
    vector = SteeringVector(
        v.detach()[None],
        (cfg.layer,),
        model_id,
        width,
        blocks,
        method="bipo",
        convention="absolute",
        extra={"bipo": cfg.to_dict(), "pairs": pairs.counts()},
    )
    return BiPOResult(vector, history, time.perf_counter() - start)
