"""The two configs of SAE training: what the SAE is (`SAEConfig`) and how it is trained
(`TrainConfig`).

Both are frozen dataclasses. Each field has a docstring under it (the CLI takes its help text from
there). `__post_init__` only validates. `to_dict`/`from_dict` (the `JSONConfig` mixin, which the
toolkit's command configs use too) give the JSON form that is saved in checkpoints and in the
`metadata` of an SAE folder's `cfg.json`.
"""

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Self

from sae.errors import ConfigError

Dtype = Literal["float32", "float64", "bfloat16", "float16"]
Normalization = Literal["none", "expected_average_only_in"]
DecoderImpl = Literal["auto", "dense", "sparse"]


class JSONConfig:
    """JSON round trip of a frozen dataclass: tuples become lists, nested configs become dicts.

    `from_dict(to_dict(c)) == c` up to the `DERIVED` fields. Unknown keys are an error that names
    the valid ones; a nested config field (one whose default is itself a `JSONConfig`) is rebuilt
    from its dict, with the fields it does not give taken from that default.
    """

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-able values, less the nested fields that a class variable
        `DERIVED` (dotted paths) says are set at run time from the others."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, JSONConfig):
                value = value.to_dict()
            out[f.name] = list(value) if isinstance(value, tuple) else value
        for path in getattr(self, "DERIVED", {}):
            *parents, leaf = path.split(".")
            if parents:
                node = out
                for key in parents:
                    node = node[key]
                node.pop(leaf, None)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown field(s) {unknown}; valid fields are {sorted(names)}"
            )
        defaults = cls() if any(_nested_type(f) for f in names.values()) else None
        kwargs = {}
        for key, value in data.items():
            nested = _nested_type(names[key])
            if nested is not None and isinstance(value, dict):
                base = getattr(defaults, key).to_dict()
                value = nested.from_dict({**base, **value})
            else:
                if isinstance(value, list) and "tuple" in str(names[key].type):
                    value = tuple(value)
                if not _fits(value, names[key].type):
                    raise ConfigError(
                        f"{cls.__name__}: field {key!r} is {value!r}, not a {_type_name(names[key].type)}"
                    )
            kwargs[key] = value
        return cls(**kwargs)


def _fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value is of a field's type (int for float allowed, bool never for int)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _fits(v, a) for v, a in zip(value, args, strict=True)
        )
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(kind, type):
        return isinstance(value, kind)
    return True


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _nested_type(f: dataclasses.Field) -> type | None:
    """The JSONConfig class of a nested config field, else None."""
    return f.type if isinstance(f.type, type) and issubclass(f.type, JSONConfig) else None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class SAEConfig(JSONConfig):
    """What one SAE is: architecture, sizes, loss hyper-parameters, where its inputs come from."""

    arch: str = "topk"
    """Architecture, a key of `sae.registry.ARCHITECTURES` (relu, topk, batchtopk, jumprelu)."""
    d_in: int = 512
    """Width of the input activations (d_model for the residual stream)."""
    d_sae: int = 4096
    """Number of latents (dictionary size)."""
    k: int = 32
    """topk: active latents per token. batchtopk: average active latents per token in a batch."""
    aux_k: int | None = None
    """topk/batchtopk: dead latents used by the AuxK loss; None means d_in // 2 (as SAELens)."""
    l1_coefficient: float = 5.0
    """relu: weight of the decoder-norm-weighted L1 penalty sum_i f_i ||W_dec[i]||."""
    l0_coefficient: float = 1.0
    """jumprelu: weight of the L0 penalty sum_i H(pre_i - threshold_i), per token, mean over the
    batch (SAELens's default; with normalised inputs the MSE is ~ d_in * FVU, so 1 is moderate)."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu: width of the rectangle kernel of the straight-through threshold gradient."""
    jumprelu_init_threshold: float = 0.01
    """jumprelu: initial value of every threshold, in (normalised) pre-activation units."""
    decoder_init_norm: float = 0.1
    """relu/jumprelu: initial norm of each decoder row (Anthropic's April 2024 update uses 0.05-1).
    topk/batchtopk keep unit-norm decoder rows and ignore this."""
    encoder_init_scale: float = 0.5
    """topk/batchtopk: W_enc starts as this times W_dec^T (whose columns have unit norm).
    relu/jumprelu start at W_dec^T and ignore this. 0.5 was best of 0.1-1 in short runs
    (docs/sae.md); EleutherAI's sparsify starts at about 0.58 (torch's nn.Linear init)."""
    batchtopk_threshold_lr: float = 0.01
    """batchtopk: EMA rate of the inference threshold towards each batch's smallest kept value."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding (SAELens's default)."""
    decoder_impl: DecoderImpl = "auto"
    """topk/batchtopk: decode from (indices, values) ('sparse') or with a dense matmul ('dense');
    'auto' picks sparse when k / d_sae <= 1/8 on the CPU and dense on CUDA (measured, see
    docs/sae.md)."""
    dtype: Dtype = "float32"
    """Parameter dtype. Train in float32; bf16 compute comes from TrainConfig.autocast_bf16."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', ..."""
    normalize_activations: Normalization = "expected_average_only_in"
    """'expected_average_only_in': train on x * s with s = sqrt(d_in) / E||x||, folded into the
    weights on save. 'none': train on raw activations."""
    hook_name: str = ""
    """TransformerLens hook the inputs come from, e.g. 'blocks.6.hook_resid_post'."""
    hook_head_index: int | None = None
    """Head index for per-head hooks (SAELens metadata); None for whole-layer hooks."""
    model_name: str = ""
    """Name of the model whose activations the SAE reads (SAELens metadata)."""
    context_size: int | None = None
    """Tokens per context used when capturing the training activations (SAELens metadata)."""
    prepend_bos: bool = True
    """Whether contexts started with BOS when capturing activations (SAELens metadata)."""
    dataset_path: str = ""
    """Dataset the activations came from (SAELens metadata)."""
    reshape_activations: Literal["none", "hook_z"] = "none"
    """SAELens metadata: 'hook_z' SAEs read [.., n_heads, d_head] activations. Our modules always
    take the flattened [.., n_heads * d_head] vector; the field is kept so folders round-trip."""

    def __post_init__(self) -> None:
        from sae.registry import ARCHITECTURES  # local: the registry module imports sae.config

        _require(
            self.arch in ARCHITECTURES,
            f"arch={self.arch!r} is not an SAE architecture; choose one of {sorted(ARCHITECTURES)}",
        )
        _require(self.d_in > 0 and self.d_sae > 0, f"d_in and d_sae must be > 0, got {self}")
        if self.arch in ("topk", "batchtopk"):
            _require(
                0 < self.k <= self.d_sae, f"k must be in [1, d_sae={self.d_sae}], got {self.k}"
            )
        _require(
            self.aux_k is None or 0 < self.aux_k <= self.d_sae,
            f"aux_k must be None or in [1, d_sae={self.d_sae}], got {self.aux_k}",
        )
        for name in ("l1_coefficient", "l0_coefficient", "jumprelu_init_threshold"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("jumprelu_bandwidth", "decoder_init_norm", "encoder_init_scale"):
            _require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        _require(
            0 < self.batchtopk_threshold_lr <= 1,
            f"batchtopk_threshold_lr must be in (0, 1], got {self.batchtopk_threshold_lr}",
        )
        _require(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps", "meta"),
            f"device must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}",
        )

    @property
    def resolved_aux_k(self) -> int:
        """Number of dead latents AuxK may use: aux_k, or d_in // 2, never more than d_sae."""
        return min(self.aux_k if self.aux_k is not None else max(self.d_in // 2, 1), self.d_sae)


@dataclass(frozen=True)
class TrainConfig(JSONConfig):
    """How SAEs are trained. One TrainConfig drives every SAE of a multi-hook run."""

    total_tokens: int = 50_000_000
    """Training tokens in all; steps = total_tokens // batch_tokens."""
    batch_tokens: int = 4096
    """Tokens per optimiser step (the global batch, summed over data-parallel ranks)."""
    lr: float = 3e-4
    """Peak Adam learning rate."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam (beta1, beta2)."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    lr_warmup_steps: int | None = 0
    """Linear warm-up from 0 to lr over this many steps; None: 1% of the steps (at least 1)."""
    lr_decay_fraction: float = 0.2
    """Linear decay to 0 over this final fraction of the steps (0 keeps lr constant)."""
    sparsity_warmup_steps: int | None = 0
    """Linear warm-up of the sparsity penalty (relu L1, jumprelu L0) from 0 over this many steps;
    None: 5% of the steps."""
    grad_clip_norm: float | None = 1.0
    """Scale each SAE's gradient down to this L2 norm (over all its parameters) before the Adam
    step when it is larger; None: off. SAELens clips at 1.0 too. The normalised TopK loss has
    gradient norms far above 1 throughout, so this makes every step's gradient unit-norm; Adam's
    second moment then no longer remembers the large early gradients, and later steps stay
    large (held-out EV +0.007 at 244 steps on the embedded model, docs/sae.md)."""
    aux_k_coefficient: float = 1 / 32
    """Weight of the AuxK loss of topk/batchtopk (Gao et al. 2024 use 1/32)."""
    dead_tokens_window: int | None = 10_000_000
    """A latent is dead when it has not fired in this many most recent training tokens; None:
    a quarter of total_tokens, at most 1,000,000."""
    norm_estimation_batches: int = 10
    """Batches read at the start to estimate the input norm scaling factor."""
    seed: int = 0
    """Seed of the initialisation of SAEs given to `train` as configs. Training itself draws no
    random numbers; the global RNG states are still checkpointed and restored on resume."""
    autocast_bf16: bool = True
    """Run forward/backward under bf16 autocast on CUDA. Ignored on CPU, where fp32 is used."""
    compile: bool = False
    """torch.compile the per-step loss function."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many steps (0: only on a signal and at the end)."""
    checkpoint_seconds: float = 0.0
    """Also write one when this many seconds have passed since the last (or the start); 0: off.
    Data-parallel ranks follow rank 0's clock, so they all write at the same step."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept on disk; older ones are deleted."""

    def __post_init__(self) -> None:
        _require(self.batch_tokens > 0, f"batch_tokens must be > 0, got {self.batch_tokens}")
        _require(
            self.total_tokens >= self.batch_tokens,
            f"total_tokens={self.total_tokens} is less than one batch ({self.batch_tokens})",
        )
        _require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _require(
            len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
            f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}",
        )
        _require(
            0 <= self.lr_decay_fraction <= 1,
            f"lr_decay_fraction must be in [0, 1], got {self.lr_decay_fraction}",
        )
        for name in ("lr_warmup_steps", "sparsity_warmup_steps", "checkpoint_every"):
            value = getattr(self, name)
            _require(value is None or value >= 0, f"{name} must be >= 0, got {value}")
        decay = math.ceil(self.lr_decay_fraction * self.total_steps)
        _require(
            self.warmup_steps + decay <= self.total_steps,
            f"lr_warmup_steps={self.warmup_steps} plus decay steps={decay} exceed total "
            f"steps={self.total_steps}; lower them or raise total_tokens",
        )
        _require(self.aux_k_coefficient >= 0, "aux_k_coefficient must be >= 0")
        _require(
            self.dead_tokens_window is None or self.dead_tokens_window > 0,
            "dead_tokens_window must be > 0",
        )
        _require(self.norm_estimation_batches > 0, "norm_estimation_batches must be > 0")
        _require(self.keep_checkpoints > 0, "keep_checkpoints must be > 0")
        _require(self.checkpoint_seconds >= 0, "checkpoint_seconds must be >= 0")
        _require(
            self.grad_clip_norm is None or self.grad_clip_norm > 0,
            f"grad_clip_norm must be None or > 0, got {self.grad_clip_norm}",
        )

    @property
    def total_steps(self) -> int:
        """Optimiser steps in the run."""
        return self.total_tokens // self.batch_tokens

    @property
    def warmup_steps(self) -> int:
        """lr_warmup_steps, or 1% of the steps (at least 1) when it is None."""
        if self.lr_warmup_steps is None:
            return max(1, self.total_steps // 100)
        return self.lr_warmup_steps

    @property
    def sparsity_steps(self) -> int:
        """sparsity_warmup_steps, or 5% of the steps when it is None."""
        if self.sparsity_warmup_steps is None:
            return self.total_steps // 20
        return self.sparsity_warmup_steps

    @property
    def dead_window(self) -> int:
        """dead_tokens_window, or min(1,000,000, total_tokens // 4) when it is None."""
        if self.dead_tokens_window is None:
            return max(1, min(1_000_000, self.total_tokens // 4))
        return self.dead_tokens_window
