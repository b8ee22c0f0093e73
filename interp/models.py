"""`load_model(spec)`: the embedded default model, a local HuggingFace folder, or a hub name, as a
TransformerLens `TransformerBridge` on the chosen device and dtype.

The bridge keeps HuggingFace's own weights and numerics (no LayerNorm folding) and exposes
TransformerLens's canonical hook names (`blocks.3.hook_resid_post`) in `model.hook_dict`.
Hook-name validation lives in `interp.hooks`; `resolve_hook` is re-exported here.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from interp.errors import ModelLoadError, OfflineError
from interp.hooks import resolve_hook

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["load_model", "resolve_device", "resolve_dtype", "model_id", "resolve_hook"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
"""Accepted dtype names (besides "auto")."""

_PATH_PREFIXES = (".", "/", "~")


def default_model_dir() -> Path:
    """Folder of the embedded default model, inside the installed package."""
    from interp.organism import WEIGHTS_DIR

    return WEIGHTS_DIR


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" is CUDA when available, else CPU; anything else must be a valid torch device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ModelLoadError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available; use 'cpu'")
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
        raise ModelLoadError(f"unknown dtype {dtype!r}; valid: 'auto', {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(_PATH_PREFIXES) or spec.endswith(os.sep)


def local_model_dir(spec: str) -> Path | None:
    """The HF folder that `spec` names, None for a hub name; errors for a bad folder."""
    if spec == "default":
        path = default_model_dir()
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"the embedded default model is not in the package yet (no {path}/config.json); "
                "it is shipped by experiments/organism/ship.py. Pass a local HF model folder "
                "or a hub name instead"
            )
        return path
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{spec!r} is not a HuggingFace model folder (it has no config.json); pass a "
                "folder written by save_pretrained, 'default' or a hub name"
            )
        return path
    if _looks_like_path(spec):
        raise ModelLoadError(f"model folder {spec!r} does not exist")
    return None


def model_id(spec: str) -> str:
    """A stable name for the model a spec names: "default", an absolute folder, or the hub name."""
    if spec == "default":
        return "default"
    path = local_model_dir(spec)
    return spec if path is None else str(path.resolve())


def _boot(name: str, device: torch.device, dtype: torch.dtype) -> "TransformerBridge":
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_transformers(name, device=device, dtype=dtype)
    model.eval()
    return model


def _boot_from_hub(name: str, device: torch.device, dtype: torch.dtype) -> "TransformerBridge":
    from huggingface_hub import constants

    hint = (
        f"could not reach the hub for {name!r}; no network — pass a local folder "
        "(no local folder of that name exists)"
    )
    if constants.HF_HUB_OFFLINE and not _in_hub_cache(name):
        raise OfflineError(f"{hint} (HF_HUB_OFFLINE is set and the model is not cached)")
    try:
        return _boot(name, device, dtype)
    except OSError as err:  # transformers wraps connection and not-found errors in OSError
        offline = "connect" in str(err).lower() or constants.HF_HUB_OFFLINE
        if offline:
            raise OfflineError(hint) from err
        raise ModelLoadError(f"could not load {name!r} from the hub: {err}") from err


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def load_model(
    spec: str = "default", device: str | torch.device = "auto", dtype: str | torch.dtype = "auto"
) -> "TransformerBridge":
    """Load a causal LM as a `TransformerBridge` in eval mode.

    Args:
        spec: "default" (the embedded model in `interp/organism/weights/`), a local HF-format
            folder (config.json, weights, tokenizer), or a hub name such as "gpt2".
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
        dtype: "auto" (bfloat16 on GPU, float32 on CPU), "float32", "bfloat16", "float16".
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    path = local_model_dir(spec)
    if path is None:
        return _boot_from_hub(spec, dev, dt)
    return _boot(str(path), dev, dt)
