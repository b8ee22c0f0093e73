"""Direct Preference Optimization (Rafailov et al. 2023), our own implementation, on a
HuggingFace causal LM: full fine-tuning, or LoRA adapters through `peft`.

    result = train_dpo(hf_model, tokenizer, pairs, DPOSettings(beta=0.1), run_dir=".x.ckpt")

The loss is TRL's `loss_type="sigmoid"` (trl/trainer/dpo_trainer.py, `DPOTrainer._compute_loss`):
with summed completion log-probabilities (prompt tokens masked) of the policy, pi, and of the
frozen reference, ref,

    loss = -mean log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

and its metrics under TRL's names: `rewards/chosen` = mean beta (pi_c - ref_c),
`rewards/rejected` = mean beta (pi_r - ref_r), `rewards/margins` = their mean difference,
`rewards/accuracies` = share of pairs with a larger chosen reward, `logps/chosen`,
`logps/rejected` = mean pi_c, pi_r. The reference is the model before training; as the pairs are
fixed, its log-probabilities are computed once, up front.

Checkpoints (every `checkpoint_every` steps, on SIGINT/SIGTERM, at the end) go to `run_dir`:
`step_<n>/` with the trained parameters, AdamW's state and `trainer.json` (step, settings,
the pairs' sha256, history, sha256 of each file), written atomically (`sae.fsutil`), and
`LATEST`. `train_dpo(..., run_dir=d)` continues from d's newest checkpoint when it has one,
and ends bit-identical to an uninterrupted run (the batch order is a function of the step).
"""

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.align.errors import AlignError
from interp.align.pairs import PreferencePairs
from interp.align.train_config import DPOSettings
from interp.errors import RunStopped

FORMAT = "interp.align.dpo/1"
METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
"""What `dpo_loss` reports, under TRL's names."""
OnStep = Callable[[int, int, dict[str, float]], None]
"""on_step(step, total steps, metrics) after every optimiser step."""


class DPOLoss(NamedTuple):
    loss: Tensor
    """Mean over pairs of -log sigmoid(beta * margin of log-ratios); differentiable."""
    metrics: dict[str, float]


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> DPOLoss:
    """The sigmoid DPO loss and TRL's metrics (module docstring) from [pairs] summed log-probs."""
    if not beta > 0:
        raise AlignError(f"beta must be > 0, got {beta!r} (DPO's KL strength)")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    metrics = {
        "loss": loss.item(),
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "logps/chosen": policy_chosen_logps.detach().mean().item(),
        "logps/rejected": policy_rejected_logps.detach().mean().item(),
    }
    return DPOLoss(loss, metrics)


def sequence_logps(logits: Tensor, input_ids: Tensor, completion_mask: Tensor) -> Tensor:
    """[batch] sum over completion tokens t of log p(token_t | tokens_<t): the logits at t-1
    scored at t, where completion_mask[t] is 1 (prompt and padding are 0)."""
    logp = logits[:, :-1].float().log_softmax(-1)
    token = logp.gather(-1, input_ids[:, 1:, None])[..., 0]
    return (token * completion_mask[:, 1:]).sum(-1)


class Batch(NamedTuple):
    """Chosen rows first, then rejected (TRL's order), right-padded."""

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor


def pair_batch(pairs: PreferencePairs, rows: Sequence[int], pad: int) -> Batch:
    """The sequences prompt + chosen and prompt + rejected of `rows` as one right-padded batch."""
    seqs, masks = [], []
    for side in (pairs.chosen_ids, pairs.rejected_ids):
        for i in rows:
            prompt, answer = pairs.prompt_ids[i], side[i]  # type: ignore[index]
            seqs.append(prompt + answer)
            masks.append([0] * len(prompt) + [1] * len(answer))
    width = max(map(len, seqs))
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    comp = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return Batch(ids, attn, comp)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def batch_logps(model: Any, batch: Batch) -> tuple[Tensor, Tensor]:
    """(chosen, rejected) summed completion log-probs of an HF causal LM on a `pair_batch`."""
    dev = _device(model)
    logits = model(
        input_ids=batch.input_ids.to(dev), attention_mask=batch.attention_mask.to(dev)
    ).logits
    logps = sequence_logps(logits, batch.input_ids.to(dev), batch.completion_mask.to(dev))
    return logps.chunk(2)


@torch.no_grad()
def reference_logps(
    model: Any, pairs: PreferencePairs, pad: int, batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """[pairs] chosen and rejected log-probs of the model as it is now (eval mode)."""
    was = model.training
    model.eval()
    out_c, out_r = [], []
    for start in range(0, len(pairs), batch_size):
        rows = range(start, min(start + batch_size, len(pairs)))
        c, r = batch_logps(model, pair_batch(pairs, rows, pad))
        out_c.append(c.cpu())
        out_r.append(r.cpu())
    model.train(was)
    return torch.cat(out_c), torch.cat(out_r)


def batch_rows(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """The pair indices of step `step`: consecutive slices of seeded permutations of range(n),
    one permutation per epoch (a pure function of the step, so a resume needs no RNG state)."""
    rows = []
    for k in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(k, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        rows.append(int(perm[pos]))
    return rows


def pairs_sha256(pairs: PreferencePairs) -> str:
    rows = json.dumps(pairs.rows(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(rows.encode()).hexdigest()


@dataclass
class DPOResult:
    """The trained HF model (LoRA adapters merged in), the per-step metrics, and the cost."""

    model: Any
    history: list[dict[str, float]]
    steps: int
    seconds: float
    """Training time of this call (reference log-probs included, model loading not)."""
    trainable: int
    """Parameters trained (LoRA: the adapters')."""
    changed: int
    """Parameters of the saved model that training changed (LoRA: every adapted weight)."""
    info: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "trainable_params": self.trainable,
            "changed_params": self.changed,
            "final": last,
        } | self.info


def _lora(model: Any, cfg: DPOSettings) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise AlignError(
            "--lora needs the peft package: pip install 'interp[lora]' (or pip install peft)"
        ) from None

    targets: Any = cfg.lora_targets
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    lcfg = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=targets
    )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        try:
            return get_peft_model(model, lcfg)
        except ValueError as err:
            raise AlignError(f"cannot add LoRA adapters ({err}); check --lora-targets") from err


def _trainable(model: Any) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def train_dpo(
    model: Any,
    tokenizer: Any,
    pairs: PreferencePairs,
    cfg: DPOSettings,
    *,
    run_dir: str | Path | None = None,
    on_step: OnStep | None = None,
    stop: Callable[[int, Any], bool] | None = None,
) -> DPOResult:
    """Train `model` (an HF causal LM, in place) on `pairs` with DPO; see the module docstring.

    `stop(step, model)`, if given, is asked after every step and ends training early when it
    returns True (e.g. a measured target reached). With `run_dir`, a run already there is
    continued from its newest checkpoint (it must be of the same pairs and settings).
    """
    pairs = pairs.tokenized(tokenizer).check()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    start = time.perf_counter()
    ref_c, ref_r = reference_logps(model, pairs, pad)
    policy = _lora(model, cfg) if cfg.lora else model
    params = _trainable(policy)
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loop = _Loop(policy, opt, params, pairs, cfg, pad, (ref_c, ref_r), run_dir)
    loop.restore()
    loop.run(on_step, stop)
    trainable = sum(p.numel() for p in params.values())
    changed = trainable
    if cfg.lora:
        changed = sum(m.weight.numel() for m in _adapted(policy))
        model = policy.merge_and_unload()
    model.eval()
    info = {"beta": cfg.beta, "pairs": pairs.counts(), "stopped_early": loop.stopped_early}
    seconds = time.perf_counter() - start
    return DPOResult(model, loop.history, loop.step, seconds, trainable, changed, info)


def _adapted(peft_model: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [m.base_layer for m in peft_model.modules() if isinstance(m, LoraLayer)]


class _Loop:
    """The optimisation steps, checkpoints and resume of one `train_dpo` call."""

    def __init__(self, model, opt, params, pairs, cfg, pad, ref, run_dir) -> None:
        self.model, self.opt, self.params, self.pairs, self.cfg = model, opt, params, pairs, cfg
        self.pad, (self.ref_c, self.ref_r) = pad, ref
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.step, self.history, self.stopped_early = 0, [], False
        self.digest = pairs_sha256(pairs)

    def run(self, on_step: OnStep | None, stop: Callable[[int, Any], bool] | None) -> None:
        from sae.interrupt import stop_on_signals

        self.model.train()
        with stop_on_signals() as signal:
            while self.step < self.cfg.steps:
                self.history.append(self._train_step())
                self.step += 1
                if on_step is not None:
                    on_step(self.step, self.cfg.steps, self.history[-1])
                if signal.signum is not None:
                    folder = self.checkpoint()
                    raise RunStopped(
                        f"DPO stopped by a signal at step {self.step}; checkpoint {folder}; "
                        "run the same command with --resume to continue",
                        exit_code=128 + signal.signum,
                    )
                if stop is not None and stop(self.step, self.model):
                    self.stopped_early = True
                    break
                every = self.cfg.checkpoint_every
                if every and self.step % every == 0 and self.step < self.cfg.steps:
                    self.checkpoint()
        self.checkpoint()

    def _train_step(self) -> dict[str, float]:
        cfg = self.cfg
        rows = batch_rows(self.step, len(self.pairs), cfg.batch_size, cfg.seed)
        pc, pr = batch_logps(self.model, pair_batch(self.pairs, rows, self.pad))
        dev = pc.device
        out = dpo_loss(pc, pr, self.ref_c[rows].to(dev), self.ref_r[rows].to(dev), cfg.beta)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.grad_clip)
        lr = cfg.lr * min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        return out.metrics | {"lr": lr}

    # --- checkpoints -------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "step": self.step,
            "settings": self.cfg.to_dict(),
            "pairs_sha256": self.digest,
            "history": self.history,
        }

    def checkpoint(self) -> Path | None:
        if self.run_dir is None:
            return None
        from sae.checkpoint import checkpoint_name, save_optimizer_state
        from sae.fsutil import (
            dump_json,
            save_safetensors,
            sha256_file,
            write_dir_atomically,
            write_text_atomically,
        )

        def write(tmp: Path) -> None:
            tensors = {n: p.detach().cpu().contiguous() for n, p in self.params.items()}
            save_safetensors(tmp / "trainable.safetensors", tensors)
            save_optimizer_state(tmp / "optimizer.safetensors", self.opt)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            dump_json(tmp / "trainer.json", self._meta() | {"files": files})

        name = checkpoint_name(self.step)
        folder = write_dir_atomically(self.run_dir / name, write, overwrite=True)
        write_text_atomically(self.run_dir / "LATEST", name + "\n")
        for old in self.run_dir.glob("step_*"):
            if old.name != name and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def restore(self) -> None:
        """Continue from the run folder's checkpoint, if it has one."""
        if self.run_dir is None or not (self.run_dir / "LATEST").is_file():
            return
        from safetensors.torch import load_file

        from sae.checkpoint import load_optimizer_state
        from sae.fsutil import load_json, sha256_file

        folder = self.run_dir / (self.run_dir / "LATEST").read_text().strip()
        meta = load_json(folder / "trainer.json")
        for fname, digest in meta.get("files", {}).items():
            if not (folder / fname).is_file() or sha256_file(folder / fname) != digest:
                raise AlignError(f"checkpoint {folder / fname} is missing or corrupted")
        if meta.get("format") != FORMAT or meta.get("pairs_sha256") != self.digest:
            raise AlignError(
                f"the checkpoint in {self.run_dir} is of other preference pairs or another "
                "format; remove it to start again"
            )
        if meta["settings"] != self.cfg.to_dict():
            raise AlignError(
                f"the checkpoint in {self.run_dir} was trained with other settings "
                f"({meta['settings']}); resume with the same options"
            )
        saved = load_file(folder / "trainable.safetensors")
        if set(saved) != set(self.params):
            raise AlignError(f"checkpoint {folder} holds other parameters than this model")
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(saved[n])
        dev = str(next(iter(self.params.values())).device)
        self.opt.load_state_dict(load_optimizer_state(folder / "optimizer.safetensors", dev))
        self.step, self.history = meta["step"], meta["history"]
