"""The config of `interp train-sae`, saved as the run's `cfg.json` (imports no torch).

One declaration per setting: what the SAE is comes from `sae.SAEConfig` (nested as `sae`), how it
is trained from `sae.TrainConfig` (nested as `train`); this class adds only what the command
itself decides (model, hooks, data, evaluation, run folder). The command's defaults for the
library settings are the nested default instances below (k 16, lr 4e-3, 3M tokens, ...).
"""

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from interp.config import DecodeErrors, ModelOptions
from interp.errors import InterpError
from sae.config import SAEConfig, TrainConfig

DEFAULT_LAYER = 12
"""The block trained on when neither --layer nor --hook is given."""

RESUMABLE_CHANGES = ("resume", "out", "device", "train.lr")
"""Fields that may differ between a run's saved config and the one that resumes it: where it is,
the device, and the peak lr (a lower one after a diverged loss: `--resume DIR --lr X`)."""


def _default_sae() -> SAEConfig:
    # d_in and d_sae are set per hook (DERIVED); until then d_sae is a bound that any --k passes,
    # so that a k too large for the real width is refused by `sae_config` with the real width.
    return SAEConfig(arch="topk", k=16, d_sae=1 << 30, l1_coefficient=5.0, l0_coefficient=2e-3)


def _default_train() -> TrainConfig:
    # Warm-ups and the dead window scale with the run (None), checkpoints every 10 minutes
    # rather than every N steps: a 24576-latent SAE's weights and Adam state are 300 MB.
    return TrainConfig(
        total_tokens=3_000_000,
        lr=4e-3,
        lr_warmup_steps=None,
        sparsity_warmup_steps=None,
        dead_tokens_window=None,
        checkpoint_every=0,
        checkpoint_seconds=600.0,
    )


@dataclass(frozen=True)
class TrainSAEConfig(ModelOptions):
    """Options of `interp train-sae`, saved as the run's `cfg.json` (the run repeats from it)."""

    layer: tuple[int, ...] = ()
    """Blocks whose `site` activations get an SAE each, all fed by one forward pass (12 when
    neither --layer nor --hook is given)."""
    site: str = "resid_post"
    """Hook site inside each block given by --layer, e.g. resid_post, mlp_out, attn_out."""
    hook: tuple[str, ...] = ()
    """Full hook names to train on as well, e.g. blocks.3.hook_mlp_out."""
    expansion: int = 8
    """d_sae = expansion * d_in, unless --d-sae is given."""
    d_sae: int | None = None
    """Number of latents of every SAE; overrides --expansion."""
    dataset: str = "default"
    """'default' (the embedded corpus), a local .txt/.jsonl/.parquet file, or a hub dataset."""
    split: str = "train"
    """Split of the embedded corpus (train/heldout) or of a hub dataset."""
    text_field: str = "text"
    """Field (.jsonl, hub) or column (.parquet) holding the text."""
    decode_errors: DecodeErrors = "strict"
    """An undecodable line of a --dataset file: 'strict' stops with its file and line,
    'replace' reads it with U+FFFD for the bad bytes, 'skip' drops it."""
    ctx_len: int = 128
    """Tokens per context, BOS included."""
    batch_size: int = 64
    """Contexts per LM forward pass."""
    eval_tokens: int = 16_384
    """Held-out tokens for the final metrics (the contexts after the training ones). Each
    metric's jackknife standard error over contexts is shown beside it; at 16,384 tokens it is
    about 0.0005 for explained variance and 0.0008 for CE loss recovered (default model, layer 12)."""
    from_cache: str | None = None
    """Train on an activation cache written by `interp capture` instead of capturing live; the
    held-out contexts then come from the cache's own source, after the cached ones."""
    out: str | None = None
    """Run folder; default runs/<model>-<arch>-<hooks>, numbered if it exists."""
    resume: str | None = None
    """Continue the interrupted run in this folder (same options)."""
    seed: int = 0
    """Seed of the SAE initialisation, the shuffle buffer and the embedded corpus."""
    sae: SAEConfig = field(default_factory=_default_sae)
    """What each SAE is (sae.SAEConfig)."""
    train: TrainConfig = field(default_factory=_default_train)
    """How the SAEs are trained (sae.TrainConfig)."""

    DERIVED: ClassVar[dict[str, str]] = {
        "sae.d_in": "the width of the hook's activations",
        "sae.d_sae": "--d-sae, else --expansion x d_in",
        "sae.device": "--device",
        "sae.hook_name": "each hook trained on",
        "sae.hook_head_index": "None (whole-layer hooks)",
        "sae.model_name": "--model",
        "sae.context_size": "--ctx-len",
        "sae.prepend_bos": "True (contexts start with BOS)",
        "sae.dataset_path": "--dataset, or the cache's dataset",
        "sae.reshape_activations": "'none'",
        "train.seed": "--seed",
    }
    """Nested fields the command sets itself; the help lists them instead of making options."""
    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"train.total_tokens": ("--tokens",)}

    def __post_init__(self) -> None:
        for name in ("expansion", "ctx_len", "batch_size", "eval_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InterpError(f"{name} must be a positive integer, got {value!r}")
        if self.ctx_len < 2:
            raise InterpError(f"ctx_len must be at least 2 (BOS plus text), got {self.ctx_len}")
        if self.d_sae is not None and self.d_sae < 1:
            raise InterpError(f"d_sae must be >= 1, got {self.d_sae}")
        if self.eval_tokens < self.ctx_len:
            raise InterpError(f"eval_tokens must be >= ctx_len ({self.ctx_len})")

    @property
    def layers(self) -> tuple[int, ...]:
        """The blocks trained on: --layer, or 12 when no --hook is given either."""
        return self.layer or ((DEFAULT_LAYER,) if not self.hook else ())

    def sae_config(self, hook: str, d_in: int, dataset: str | None = None) -> SAEConfig:
        """The SAEConfig of the SAE at `hook`, whose activations are `d_in` wide."""
        d_sae = self.d_sae or self.expansion * d_in
        k = self.sae.k
        if self.sae.arch in ("topk", "batchtopk") and k > d_sae:
            raise InterpError(f"k={k} is more than the SAE width d_sae={d_sae}; use k <= {d_sae}")
        return dataclasses.replace(
            self.sae,
            d_in=d_in,
            d_sae=d_sae,
            k=min(k, d_sae),
            device=self.device,
            hook_name=hook,
            hook_head_index=None,
            model_name=self.model,
            context_size=self.ctx_len,
            prepend_bos=True,
            dataset_path=dataset or self.dataset,
            reshape_activations="none",
        )

    def train_config(self) -> TrainConfig:
        """The TrainConfig of the run (its seed is --seed)."""
        return dataclasses.replace(self.train, seed=self.seed)
