"""The configs of `interp align dpo|bipo` (import no torch).

`DPOSettings` and `BiPOSettings` are the library's training settings (`train_dpo`,
`train_bipo`); `DPOConfig` and `BiPOConfig` are the commands', which nest them and add where
the preference pairs come from (`PairOptions`) and what `AlignOptions` shares.
"""

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from interp.align.config import AlignOptions
from interp.align.errors import AlignError
from interp.config import JSONConfig


def _positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or value is None or not value > 0:
            raise AlignError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class DPOSettings(JSONConfig):
    """How `train_dpo` trains (the sigmoid DPO loss of Rafailov et al. 2023)."""

    beta: float = 0.1
    """DPO's beta: the strength of the pull towards the reference model (> 0)."""
    lr: float = 5e-5
    """Peak learning rate of AdamW (linear warm-up, then constant)."""
    steps: int = 15
    """Optimiser steps."""
    batch_size: int = 16
    """Preference pairs per step (each is a chosen and a rejected sequence)."""
    warmup_steps: int = 5
    """Steps of linear learning-rate warm-up from 0."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    grad_clip: float | None = 1.0
    """Clip the gradient's global norm to this (none: no clipping)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of every weight; they are merged into the saved model."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is alpha / r * B A)."""
    lora_targets: str = "all-linear"
    """Modules that get adapters: 'all-linear' (peft's choice: every linear layer but the output
    head) or a comma list of module names, e.g. q_proj,v_proj."""
    checkpoint_every: int = 20
    """Write a checkpoint every this many steps (0: only at the end and on SIGINT/SIGTERM)."""
    seed: int = 0
    """Seed of the batch order and the LoRA initialisation."""

    def __post_init__(self) -> None:
        _positive(self, "beta", "lr", "steps", "batch_size", "lora_r", "lora_alpha")
        if self.warmup_steps < 0 or self.checkpoint_every < 0 or self.weight_decay < 0:
            raise AlignError("warmup_steps, checkpoint_every and weight_decay must be >= 0")
        if self.grad_clip is not None:
            _positive(self, "grad_clip")


@dataclass(frozen=True)
class BiPOSettings(JSONConfig):
    """How `train_bipo` trains a steering vector (Cao et al. 2024; their settings: beta 0.1,
    AdamW, lr 5e-4, batch 4, weight decay 0.05)."""

    layer: int = 13
    """The block whose output (hook_resid_post) the vector is added to."""
    beta: float = 0.1
    """DPO's beta (> 0)."""
    lr: float = 5e-3
    """AdamW learning rate of the vector."""
    steps: int = 200
    """Optimiser steps; each draws d = +1 or -1 for its batch."""
    batch_size: int = 8
    """Preference pairs per step."""
    weight_decay: float = 0.05
    """AdamW's decoupled weight decay on the vector."""
    seed: int = 0
    """Seed of the batch order and of the signs d."""

    def __post_init__(self) -> None:
        _positive(self, "beta", "lr", "steps", "batch_size")
        if self.layer < 0 or self.weight_decay < 0:
            raise AlignError("layer and weight_decay must be >= 0")


@dataclass(frozen=True)
class PairOptions(AlignOptions):
    """Where the preference pairs come from: a steering vector's answers on a prompt set, or a
    jsonl file of pairs."""

    prompts: str = "jailbreak"
    """Prompts of the target pairs (chosen = steered answer): a built-in set of the default
    model's TRAINING split (jailbreak, harmful, benign, jailbreak-benign, gender) or a .jsonl
    file of {"prompt": ...} lines (optional "sign": 1 or -1)."""
    anchors: str = "benign"
    """Prompts of the anchor pairs (chosen = unsteered answer), so that the model does not do the
    steered thing everywhere: a built-in set, a .jsonl file, or 'none'."""
    n_prompts: int = 128
    """Prompts drawn from each built-in set."""
    n_anchors: int = 64
    """Anchor prompts drawn from a built-in set."""
    scale: float = 1.0
    """Steering scale of the chosen answers (under the vector's convention)."""
    rejected: Literal["unsteered", "anti"] = "unsteered"
    """The rejected answer: the unsteered one, or the one steered at -scale."""
    positions: Literal["prompt", "all"] = "prompt"
    """Where the vector acts while the chosen answers are generated: the prompt's tokens only,
    or every position (also each generated token)."""
    max_new_tokens: int = 8
    """Length of the greedy answers."""
    pairs: str | None = None
    """A jsonl file of preference pairs (prompt, chosen, rejected; TRL's format) instead of
    making them from --vector."""
    save_pairs: str | None = None
    """Also write the pairs used to this jsonl file."""

    def __post_init__(self) -> None:
        _positive(self, "n_prompts", "max_new_tokens")
        if self.n_anchors < 0:
            raise AlignError(f"n_anchors must be >= 0, got {self.n_anchors}")


@dataclass(frozen=True)
class DPOConfig(PairOptions):
    """Options of `interp align dpo`."""

    resume: bool = False
    """Continue the interrupted run of this --out from its checkpoint folder (.<out>.ckpt
    beside it)."""
    dpo: DPOSettings = field(default_factory=DPOSettings)
    """How the model is trained (interp.align.train_config.DPOSettings)."""

    DERIVED: ClassVar[dict[str, str]] = {"dpo.seed": "--seed"}


@dataclass(frozen=True)
class BiPOConfig(PairOptions):
    """Options of `interp align bipo`: --out is a model folder holding the model with the
    trained vector baked in (= steered at scale 1, evaluated like every align command) and the
    vector itself as bipo.safetensors."""

    bipo: BiPOSettings = field(default_factory=BiPOSettings)
    """How the vector is trained (interp.align.train_config.BiPOSettings)."""

    DERIVED: ClassVar[dict[str, str]] = {"bipo.seed": "--seed"}
