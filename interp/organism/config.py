"""The config of `interp organism eval` (imports no torch); the command itself is
`interp.evals.cli.organism_run`."""

from dataclasses import dataclass
from typing import Literal

from interp.config import JSONConfig


@dataclass(frozen=True)
class OrganismEvalConfig(JSONConfig):
    """Options of `interp organism eval`."""

    model: str = "default"
    """'default' (the embedded model), a local HF model folder, or a hub name."""
    seed: int = 0
    """Seed for drawing the held-out prompts."""
    json: str | None = None
    """Also write the table as JSON to this file (the format of `interp eval --json`)."""
    force: bool = False
    """Overwrite --json if it exists."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:N'."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    """Model dtype; float32 by default, where the planted-behaviour targets were measured."""
    threads: int | None = None
    """CPU threads for torch (default: torch's own choice); 1 is fastest on a busy machine."""
