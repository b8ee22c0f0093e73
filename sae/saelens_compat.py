"""Translation of SAELens folders (cfg.json + weights) into our config and state dict.

Pure dict/tensor code, no sae_lens import. Covers SAELens 6 inference folders (standard, topk,
jumprelu), its training checkpoints (the same plus batchtopk), and pre-6 configs as far as
their keys were renamed (hook_point -> hook_name).
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae.config import SAEConfig

OUR_ARCH = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "batchtopk"}
METADATA_KEYS = (
    "hook_name",
    "hook_head_index",
    "model_name",
    "context_size",
    "prepend_bos",
    "dataset_path",
)
ACTIVATION_SCALER_FILENAME = "activation_scaler.json"


def _saelens_arch(raw: dict[str, Any]) -> str:
    arch = raw.get("architecture", "standard")
    old_fn = raw.get("activation_fn", raw.get("activation_fn_str"))
    if "architecture" not in raw and old_fn == "topk":
        arch = "topk"
    if arch not in OUR_ARCH:
        raise ValueError(
            f"SAELens architecture {arch!r} is not supported; supported: {sorted(OUR_ARCH)}"
        )
    return arch


def _topk_k(raw: dict[str, Any]) -> int:
    k = raw.get("k", (raw.get("activation_fn_kwargs") or {}).get("k"))
    if k is None:
        raise ValueError("a topk/batchtopk cfg.json must give k")
    if float(k) != int(k):
        raise ValueError(f"only whole k is supported, got k={k}")
    return int(k)


def _metadata(raw: dict[str, Any]) -> dict[str, Any]:
    meta = dict(raw.get("metadata") or {})
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
    if norm not in ("none", "expected_average_only_in"):
        raise ValueError(
            f"normalize_activations={norm!r} is not supported (only 'none' and "
            "'expected_average_only_in', a single scalar that can be folded into the weights)"
        )
    return norm or "none"


def config_from_saelens(
    raw: dict[str, Any], device: str, dtype: str | None, scaler_folded: bool
) -> SAEConfig:
    """Our SAEConfig for a SAELens cfg.json dict (with our own saved config as the base).

    normalize_activations stays 'expected_average_only_in' only when the folder says so and no
    scaling factor is folded in (`scaler_folded`): the weights then expect inputs scaled by a
    factor this folder does not record (SAELens's load_from_disk applies none either).
    """
    arch = _saelens_arch(raw)
    meta = _metadata(raw)
    fields = {f.name for f in dataclasses.fields(SAEConfig)}
    base = {k: v for k, v in (meta.get("interp_sae_config") or {}).items() if k in fields}
    norm = "none" if scaler_folded else _normalization(raw)
    base |= {
        "arch": OUR_ARCH[arch],
        "d_in": int(raw["d_in"]),
        "d_sae": int(raw["d_sae"]),
        "apply_b_dec_to_input": bool(raw.get("apply_b_dec_to_input", True)),
        "normalize_activations": norm,
        "reshape_activations": raw.get("reshape_activations", "none"),
        "dtype": (dtype or raw.get("dtype", "float32")).removeprefix("torch."),
        "device": device,
        "decoder_impl": base.get("decoder_impl", "auto"),
    }
    if arch in ("topk", "batchtopk"):
        base["k"] = _topk_k(raw)
    base |= {k: meta[k] for k in METADATA_KEYS if meta.get(k) is not None}
    return SAEConfig.from_dict(base)


def read_activation_scaler(raw: dict[str, Any], folder: Path) -> float | None:
    """The norm scaling factor of a SAELens training checkpoint (activation_scaler.json), when
    its cfg says 'expected_average_only_in' and the file records one; else None."""
    path = folder / ACTIVATION_SCALER_FILENAME
    if _normalization(raw) != "expected_average_only_in" or not path.is_file():
        return None
    factor = json.loads(path.read_text()).get("scaling_factor")
    return None if factor is None else float(factor)


def _fold_decoder_norms(state: dict[str, Tensor]) -> None:
    """SAELens's rescale_acts_by_decoder_norm scales pre-activations by ||W_dec[i]|| and the
    decoded activations by 1 / ||W_dec[i]||; folding that into W_enc, b_enc and W_dec gives
    the same function with unit-norm decoder rows."""
    norms = state["W_dec"].norm(dim=-1).clamp_min(1e-8)
    state["W_enc"] = state["W_enc"] * norms
    state["b_enc"] = state["b_enc"] * norms
    state["W_dec"] = state["W_dec"] / norms[:, None]


def state_dict_from_saelens(raw: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict for SAELens weights."""
    arch = _saelens_arch(raw)
    state = {k: tensors[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec") if k in tensors}
    scaling = tensors.get("scaling_factor")
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise ValueError("SAELens finetuning_scaling_factor weights are not supported")
    if arch == "jumprelu":
        if "log_threshold" in tensors:
            state["threshold"] = tensors["log_threshold"].exp()
        else:
            state["threshold"] = tensors["threshold"]
    if arch == "batchtopk":
        state["threshold"] = tensors["topk_threshold"].to(torch.float64).reshape(())
        state["threshold_updates"] = torch.ones((), dtype=torch.long)
    if arch in ("topk", "batchtopk") and raw.get("rescale_acts_by_decoder_norm", False):
        _fold_decoder_norms(state)
    return state
