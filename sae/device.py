"""Device and dtype names, resolved in one place for the SAE package and the toolkit.

"auto" is CUDA when present, else the CPU; dtype "auto" is bfloat16 on a GPU and float32 on a
CPU. A name that cannot be used raises `ConfigError` saying what is valid.
"""

import torch

from sae.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float64": torch.float64,
}
"""Accepted dtype names (besides "auto")."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" is CUDA when available, else CPU; anything else must be a usable torch device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available; use 'cpu'")
    return resolved


def resolve_dtype(
    dtype: str | torch.dtype = "auto", device: torch.device | None = None
) -> torch.dtype:
    """ "auto" is bfloat16 on a GPU and float32 on a CPU; names as in `DTYPES`."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        on_gpu = device is not None and device.type == "cuda"
        return torch.bfloat16 if on_gpu else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; valid: 'auto', {', '.join(DTYPES)}")
    return DTYPES[dtype]
