"""The config of `interp capture`, saved as the cache's `cfg.json` (imports no torch)."""

import math
from dataclasses import dataclass
from typing import get_args

from interp.config import DecodeErrors, Dtype, ModelOptions, TextSource
from interp.errors import InterpError

RESUMABLE_CHANGES = ("tokens", "resume", "out", "force")
"""Config fields that may differ when resuming: everything else fixes the data and its order
(but `decode_errors` may leave 'strict': a strict run stopped at the first undecodable line, so
the shards it wrote hold only text before that line, which every choice reads alike)."""


@dataclass(frozen=True)
class CaptureConfig(ModelOptions):
    """Options of `interp capture`, saved as the cache's `cfg.json`."""

    layer: tuple[int, ...] = ()
    """Blocks whose `site` activations are captured (give --layer, --hook or both)."""
    site: str = "resid_post"
    """Hook site inside each block given by `layer`, e.g. resid_post, mlp_out, attn.hook_z."""
    hook: tuple[str, ...] = ()
    """Full hook names to capture as well, e.g. blocks.3.hook_mlp_out."""
    dataset: str = "default"
    """'default' (the embedded corpus), a local .txt/.jsonl/.parquet file, or a hub dataset."""
    split: str = "train"
    """Split of the embedded corpus (train/heldout) or of a hub dataset."""
    text_field: str = "text"
    """Field (.jsonl, hub) or column (.parquet) holding the text."""
    decode_errors: DecodeErrors = "strict"
    """A .txt/.jsonl line that is not UTF-8: 'strict' stops with an error naming the file and
    line, 'replace' reads the bad bytes as U+FFFD, 'skip' drops the line."""
    ctx_len: int = 128
    """Tokens per context, BOS included."""
    tokens: int = 1_000_000
    """Tokens to capture, rounded up to whole contexts."""
    batch_size: int = 32
    """Contexts per forward pass."""
    shard_tokens: int = 65_536
    """Tokens per shard file, rounded down to whole contexts (at least one)."""
    seed: int = 0
    """Seed of the embedded corpus stream."""
    out: str = "acts"
    """Output folder of the cache."""
    resume: bool = False
    """Continue an interrupted capture in `out` (same options; `tokens` may grow)."""
    force: bool = False
    """Let --resume with fewer `tokens` than the cache holds delete the shards past them."""

    def __post_init__(self) -> None:
        for name in ("ctx_len", "tokens", "batch_size", "shard_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InterpError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.ctx_len < 2:
            raise InterpError(f"ctx_len must be at least 2 (BOS plus text), got {self.ctx_len}")
        for name, kind in (("dtype", Dtype), ("decode_errors", DecodeErrors)):
            valid = get_args(kind)
            if getattr(self, name) not in valid:
                raise InterpError(f"{name} must be one of {valid}, got {getattr(self, name)!r}")

    @property
    def source(self) -> TextSource:
        return TextSource(**{name: getattr(self, name) for name in TextSource._fields})

    @property
    def n_contexts(self) -> int:
        return math.ceil(self.tokens / self.ctx_len)

    @property
    def shard_contexts(self) -> int:
        return max(1, self.shard_tokens // self.ctx_len)
