"""Translation of SAELens folders (cfg.json + weights) into our config and state dict.

Pure dict/tensor code, no sae_lens import. Covers SAELens 6 inference folders (standard, topk,
jumprelu), its training checkpoints (the same plus batchtopk), and pre-6 configs as far as
their keys were renamed (hook_point -> hook_name).

Every field is type-checked as it is read; a bad one raises `SAEError` naming the field (the
caller, `sae.io.load_sae`, adds the file). A cfg.json without "architecture" is read as SAELens
would read it where SAELens can (pre-6 configs: "standard", or "topk" when activation_fn is topk
with a k), and otherwise from what the folder itself shows: a threshold tensor (jumprelu), a
topk_threshold tensor (batchtopk), a k or our own saved config (topk), or else it is refused.
"""

import dataclasses
import json
import math
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from sae.config import SAEConfig
from sae.device import DTYPES
from sae.errors import FileFormatError, SAEError
from sae.fsutil import json_kind

OUR_ARCH = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "batchtopk"}
SAELENS_ARCH = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}
"""Our architecture -> the SAELens one `save_sae` writes (BatchTopK as a JumpReLU, as SAELens)."""
METADATA_KEYS = (
    "hook_name",
    "hook_head_index",
    "model_name",
    "context_size",
    "prepend_bos",
    "dataset_path",
)
ACTIVATION_SCALER_FILENAME = "activation_scaler.json"
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(SAEConfig)}
_MISSING = object()


def _matches(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits a dataclass field type (int, float, bool, str, None, Literal,
    unions of those, tuples). JSON has no int/bool confusion to allow: True is not an int here."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple or tp is tuple:
        return isinstance(value, list | tuple)
    return True  # a type this module does not check; SAEConfig validates it


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond float's range
        return False


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return f"one of {list(typing.get_args(tp))}"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    parts = (
        typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else [tp]
    )
    return " or ".join(names.get(p, "null" if p is type(None) else str(p)) for p in parts)


def _field(raw: dict[str, Any], key: str, tp: Any, default: Any = _MISSING, where: str = "") -> Any:
    """raw[key], checked against `tp`; `default` when absent or null (required without one)."""
    value = raw.get(key)
    if value is None and default is not _MISSING:
        return default
    if key not in raw:
        raise SAEError(f"field {where + key!r} is missing")
    if not _matches(value, tp):
        raise SAEError(f"field {where + key!r} must be {_describe(tp)}, got {value!r}")
    return value


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """raw[key] as a JSON object ({} when absent or null)."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SAEError(f"field {key!r} must be a JSON object, got {json_kind(value)}")
    return value


def _version_before_6(raw: dict[str, Any]) -> bool:
    """Whether SAELens would read this cfg as a pre-6 config (no version, or one below 6)."""
    version = raw.get("sae_lens_version") or _object(raw, "metadata").get("sae_lens_version")
    if not isinstance(version, str) or not version:
        return True
    major = version.split(".")[0]
    return not major.isdigit() or int(major) < 6


def _declared_arch(raw: dict[str, Any]) -> str | None:
    """The architecture the cfg names without an "architecture" field: a topk activation_fn
    or a k, else our saved config or SAELens's metadata.training_architecture."""
    old_fn = raw.get("activation_fn", raw.get("activation_fn_str"))
    kwargs = raw.get("activation_fn_kwargs")
    if old_fn == "topk" or "k" in raw or (isinstance(kwargs, dict) and "k" in kwargs):
        return "topk"
    meta = _object(raw, "metadata")
    ours = meta.get("interp_sae_config")
    named = ours.get("arch") if isinstance(ours, dict) else meta.get("training_architecture")
    if not isinstance(named, str):
        return None
    return SAELENS_ARCH.get(named, named if named in OUR_ARCH else None)


def saelens_arch(raw: dict[str, Any], tensor_names: Collection[str]) -> str:
    """The SAELens architecture of a cfg.json dict (a key of OUR_ARCH), as described above."""
    if "architecture" in raw:
        arch = raw["architecture"]
        if not isinstance(arch, str) or arch not in OUR_ARCH:
            raise SAEError(
                f"SAELens architecture {arch!r} is not supported; supported: {sorted(OUR_ARCH)}"
            )
        return arch
    if _version_before_6(raw):  # SAELens's own defaulting (handle_pre_6_0_config)
        old_fn = raw.get("activation_fn", raw.get("activation_fn_str"))
        kwargs = raw.get("activation_fn_kwargs")
        if old_fn == "topk" and isinstance(kwargs, dict) and kwargs.get("k") is not None:
            return "topk"
    if "topk_threshold" in tensor_names:
        return "batchtopk"
    if "threshold" in tensor_names or "log_threshold" in tensor_names:
        return "jumprelu"
    declared = _declared_arch(raw)
    if declared in ("standard", "topk"):
        return declared
    if declared is None and _version_before_6(raw):
        return "standard"
    shown = (
        f"its metadata says {declared!r} but the weights have no threshold"
        if declared
        else "no k, no threshold tensor, no metadata.training_architecture"
    )
    raise SAEError(
        f"field 'architecture' is missing and the folder does not show which SAE it is "
        f'({shown}); add "architecture": one of {sorted(OUR_ARCH)}'
    )


def _topk_k(raw: dict[str, Any]) -> int:
    kwargs = _object(raw, "activation_fn_kwargs")
    k = raw.get("k", kwargs.get("k"))
    if k is None:
        raise SAEError("field 'k' is missing; a topk/batchtopk cfg.json must give k")
    if not _matches(k, float) or float(k) != int(k):
        raise SAEError(f"field 'k' must be a whole number, got {k!r}")
    return int(k)


def _metadata(raw: dict[str, Any]) -> dict[str, Any]:
    meta = dict(_object(raw, "metadata"))
    renamed = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index"}
    for key, value in raw.items():
        key = renamed.get(key, key)
        if key in METADATA_KEYS and meta.get(key) is None:
            meta[key] = value
    return meta


def _normalization(raw: dict[str, Any]) -> str:
    norm = raw.get("normalize_activations", "none")
    if isinstance(norm, bool):  # SAELens < 6 stored a flag
        norm = "expected_average_only_in" if norm else "none"
    if norm is None:
        norm = "none"
    if norm not in ("none", "expected_average_only_in"):
        raise SAEError(
            f"field 'normalize_activations' is {norm!r}, which is not supported (only 'none' and "
            "'expected_average_only_in', a single scalar that can be folded into the weights)"
        )
    return norm


def _our_saved_config(meta: dict[str, Any]) -> dict[str, Any]:
    """metadata.interp_sae_config (written by `save_sae`), its fields type-checked."""
    ours = _object(meta, "interp_sae_config")
    base = {}
    for key in ours:
        if key in _FIELD_TYPES:
            base[key] = _field(ours, key, _FIELD_TYPES[key], where="metadata.interp_sae_config.")
    return base


def _dtype(raw: dict[str, Any], dtype: str | None) -> str:
    if dtype is not None:
        name = dtype.removeprefix("torch.")
        if name not in DTYPES:
            raise SAEError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}")
        return name
    name = _field(raw, "dtype", str, "float32").removeprefix("torch.")
    if name not in DTYPES:
        raise SAEError(f"field 'dtype' is {name!r}; expected one of {sorted(DTYPES)}")
    return name


def config_from_saelens(
    raw: dict[str, Any],
    tensor_names: Collection[str],
    device: str,
    dtype: str | None,
    scaler_folded: bool,
) -> SAEConfig:
    """Our SAEConfig for a SAELens cfg.json dict (with our own saved config as the base), given
    the names of the tensors in its weights file.

    normalize_activations stays 'expected_average_only_in' only when the folder says so and no
    scaling factor is folded in (`scaler_folded`): the weights then expect inputs scaled by a
    factor this folder does not record (SAELens's load_from_disk applies none either).
    """
    if not isinstance(raw, dict):
        raise SAEError(f"expected a JSON object, got {json_kind(raw)}")
    arch = saelens_arch(raw, tensor_names)
    meta = _metadata(raw)
    base = _our_saved_config(meta)
    base |= {
        "arch": OUR_ARCH[arch],
        "d_in": _field(raw, "d_in", int),
        "d_sae": _field(raw, "d_sae", int),
        "apply_b_dec_to_input": _field(raw, "apply_b_dec_to_input", bool, True),
        "normalize_activations": "none" if scaler_folded else _normalization(raw),
        "reshape_activations": _field(
            raw, "reshape_activations", _FIELD_TYPES["reshape_activations"], "none"
        ),
        "dtype": _dtype(raw, dtype),
        "device": device,
        "decoder_impl": base.get("decoder_impl", "auto"),
    }
    if arch in ("topk", "batchtopk"):
        base["k"] = _topk_k(raw)
    for key in METADATA_KEYS:
        if meta.get(key) is not None:
            base[key] = _field(meta, key, _FIELD_TYPES[key], where="metadata.")
    return SAEConfig.from_dict(base)


def read_activation_scaler(raw: dict[str, Any], folder: Path) -> float | None:
    """The norm scaling factor of a SAELens training checkpoint (activation_scaler.json), when
    its cfg says 'expected_average_only_in' and the file records one; else None. A malformed
    file raises FileFormatError naming it."""
    path = folder / ACTIVATION_SCALER_FILENAME
    if _normalization(raw) != "expected_average_only_in" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileFormatError(path, f"not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise FileFormatError(path, f"expected a JSON object, got {json_kind(data)}")
    factor = data.get("scaling_factor")
    if factor is not None and not (_matches(factor, float) and factor > 0):
        raise FileFormatError(
            path, f"field 'scaling_factor' must be a positive number, got {factor!r}"
        )
    return None if factor is None else float(factor)


def _fold_decoder_norms(state: dict[str, Tensor]) -> None:
    """SAELens's rescale_acts_by_decoder_norm scales pre-activations by ||W_dec[i]|| and the
    decoded activations by 1 / ||W_dec[i]||; folding that into W_enc, b_enc and W_dec gives
    the same function with unit-norm decoder rows."""
    norms = state["W_dec"].norm(dim=-1).clamp_min(1e-8)
    state["W_enc"] = state["W_enc"] * norms
    state["b_enc"] = state["b_enc"] * norms
    state["W_dec"] = state["W_dec"] / norms[:, None]


def _expected_shapes(cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
    d_in, d_sae = cfg.d_in, cfg.d_sae
    return {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}


def state_dict_from_saelens(
    raw: dict[str, Any], cfg: SAEConfig, tensors: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Our state dict for SAELens weights, whose names and shapes are checked against `cfg`
    (an SAEError names the tensor, its shape and the cfg fields it contradicts)."""
    arch = saelens_arch(raw, tensors)
    expected = _expected_shapes(cfg)
    if arch == "jumprelu":
        name = "log_threshold" if "log_threshold" in tensors else "threshold"
        expected[name] = (cfg.d_sae,)
    if arch == "batchtopk":
        expected["topk_threshold"] = ()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise SAEError(f"the weights lack {missing} for a {arch} SAE; they hold {sorted(tensors)}")
    for name, shape in expected.items():
        got = tuple(tensors[name].shape)
        if got != shape and not (shape == () and tensors[name].numel() == 1):
            raise SAEError(
                f"tensor {name} has shape {list(got)}, but d_in={cfg.d_in} and "
                f"d_sae={cfg.d_sae} in cfg.json make it {list(shape)}"
            )
        if not (tensors[name].is_floating_point() or name == "topk_threshold"):
            raise SAEError(f"tensor {name} has dtype {tensors[name].dtype}, not a float type")
    state = {k: tensors[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
    scaling = tensors.get("scaling_factor")
    if scaling is not None and not torch.allclose(
        scaling.double(), torch.ones_like(scaling.double())
    ):
        raise SAEError("SAELens finetuning_scaling_factor weights are not supported")
    if arch == "jumprelu":
        if "log_threshold" in tensors:
            state["threshold"] = tensors["log_threshold"].exp()
        else:
            state["threshold"] = tensors["threshold"]
    if arch == "batchtopk":
        state["threshold"] = tensors["topk_threshold"].to(torch.float64).reshape(())
        state["threshold_updates"] = torch.ones((), dtype=torch.long)
    if arch in ("topk", "batchtopk") and _field(raw, "rescale_acts_by_decoder_norm", bool, False):
        _fold_decoder_norms(state)
    return state
