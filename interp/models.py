"""`load_model(spec)`: the embedded default model, a local HuggingFace folder, or a hub name, as a
TransformerLens `TransformerBridge` on the chosen device and dtype.

The bridge keeps HuggingFace's own weights and numerics (no LayerNorm folding) and exposes
TransformerLens's canonical hook names (`blocks.3.hook_resid_post`) in `model.hook_dict`.
Hook-name validation lives in `interp.hooks`; `resolve_hook` is re-exported here.

Generation with interventions and the KV-cache fix applied by `load_model` are in
`interp.generation`. `load_hf` gives HuggingFace's own model and tokenizer for the same spec.
"""

import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from interp.errors import ModelLoadError, OfflineError
from interp.hooks import resolve_hook
from sae.device import DTYPES, resolve_device, resolve_dtype

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "DTYPES",
    "load_hf",
    "load_model",
    "model_id",
    "resolve_device",
    "resolve_dtype",
    "resolve_hook",
]

_PATH_PREFIXES = (".", "/", "~")


def default_model_dir() -> Path:
    """Folder of the embedded default model, inside the installed package."""
    from interp.organism import WEIGHTS_DIR

    return WEIGHTS_DIR


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

    from interp.generation import route_kv_cache

    model = TransformerBridge.boot_transformers(name, device=device, dtype=dtype)
    model.eval()
    route_kv_cache(model)
    return model


def _hf(name: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(name)


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection within `timeout` seconds (asked once per
    process). Without it, an offline machine waits through huggingface_hub's retries (30-40 s)
    before the same error."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_hub_name(name: str, what: str, error: type[Exception] = ModelLoadError) -> str:
    """`name` if it can name a hub repository, else `error` saying what a name looks like."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise error(
            f"{what} {name!r} is neither an existing local path nor a hub name (hub names look "
            "like 'gpt2' or 'org/name': letters, digits, '-', '_', '.', not starting with "
            "'-' or '.')"
        ) from None
    return name


def _from_hub(name: str, load: Callable[[str], Any]) -> Any:
    """`load(name)` for a hub name, with the hub's failures as `OfflineError`/`ModelLoadError`."""
    from huggingface_hub import constants

    hint = (
        f"could not reach the hub for {name!r}; no network — pass a local folder "
        "(no local folder of that name exists)"
    )
    check_hub_name(name, "model")
    if constants.HF_HUB_OFFLINE and not _in_hub_cache(name):
        raise OfflineError(f"{hint} (HF_HUB_OFFLINE is set and the model is not cached)")
    if not _in_hub_cache(name) and not hub_reachable():
        raise OfflineError(f"{hint} (the hub's host does not answer)")
    try:
        return load(name)
    except OSError as err:  # transformers wraps connection and not-found errors in OSError
        offline = "connect" in str(err).lower() or constants.HF_HUB_OFFLINE
        if offline:
            raise OfflineError(hint) from err
        raise ModelLoadError(f"could not load {name!r} from the hub: {err}") from err


def _load(spec: str, load: Callable[[str], Any]) -> Any:
    path = local_model_dir(spec)
    if path is None:
        return _from_hub(spec, load)
    _check_config(path)
    return load(str(path))


def _check_config(path: Path) -> None:
    """`ModelLoadError` naming config.json if transformers cannot read it (not JSON, not an
    object, no or an unknown `model_type`, a field of the wrong type), before weights load."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    # transformers raises OSError, ValueError or KeyError here, and huggingface_hub its
    # StrictDataclassError (an Exception) for a field of the wrong type; reading one local
    # file fails no other way.
    except Exception as err:
        reason = " ".join(str(err).split()).split(". ")[0].rstrip(".")
        raise ModelLoadError(
            f"{path / 'config.json'} is not a usable model config ({reason}); fix it, or save "
            "the model again with save_pretrained"
        ) from err


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
    return _load(spec, lambda name: _boot(name, dev, dt))


def load_hf(
    spec: str = "default", device: str | torch.device = "auto", dtype: str | torch.dtype = "auto"
) -> tuple[Any, Any]:
    """(model, tokenizer) as HuggingFace's own `AutoModelForCausalLM` and `AutoTokenizer`, for
    code that runs or saves a plain HF model (behaviour evaluation, weight edits, fine-tuning).
    `spec`, `device` and `dtype` as for `load_model`."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    return _load(spec, lambda name: _hf(name, dev, dt))
