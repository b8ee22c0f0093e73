"""SAE folders in SAELens's layout, which `sae_lens.SAE.load_from_disk` opens.

    folder/
      cfg.json                  SAELens 6 inference config; metadata.interp_sae_config holds our
                                full SAEConfig, metadata.norm_scaling_factor the folded factor
      sae_weights.safetensors   W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec,
                                threshold [d_sae] (jumprelu, batchtopk)
      sparsity.safetensors      {"sparsity": log10(feature density + 1e-10)}, when given
      metrics.json              any metrics passed to save_sae, when given

Architectures map to SAELens's as relu -> "standard", topk -> "topk" (rescale_acts_by_decoder_norm
false), jumprelu -> "jumprelu", and batchtopk -> "jumprelu" with its inference threshold copied to
every latent, as SAELens saves BatchTopK SAEs. Weights are always saved for raw activations: a
norm scaling factor is folded in first, and cfg.json says normalize_activations "none".
"""

from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from sae.base import SAE
from sae.device import DTYPES
from sae.errors import ConfigError, FileFormatError, SAEError
from sae.fsutil import (
    dump_json,
    load_json,
    oserror_with_path,
    save_safetensors,
    write_dir_atomically,
)
from sae.metrics import log_feature_density
from sae.normalize import folded_copy
from sae.saelens_compat import (
    SAELENS_ARCH,
    config_from_saelens,
    read_activation_scaler,
    state_dict_from_saelens,
)

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"
METRICS_FILENAME = "metrics.json"


def _sae_lens_version() -> str:
    # SAELens picks its config parser by this version (< 6.0 means the old layout). The layout
    # written here is SAELens 6's, so name the installed 6.x, or 6.0.0 when it is not installed.
    try:
        return importlib_metadata.version("sae-lens")
    except importlib_metadata.PackageNotFoundError:
        return "6.0.0"


def saelens_cfg_dict(sae: SAE, norm_scaling_factor: float | None = None) -> dict[str, Any]:
    """The cfg.json that SAELens reads for `sae` (whose weights already act on raw inputs)."""
    c = sae.cfg
    cfg: dict[str, Any] = {
        "architecture": SAELENS_ARCH[c.arch],
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": c.dtype,
        "device": str(sae.W_enc.device),
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": c.reshape_activations,
    }
    if cfg["architecture"] == "topk":
        cfg |= {"k": c.k, "rescale_acts_by_decoder_norm": False}
    cfg["metadata"] = {
        "sae_lens_version": _sae_lens_version(),
        "sae_lens_training_version": None,
        "model_name": c.model_name,
        "hook_name": c.hook_name,
        "hook_head_index": c.hook_head_index,
        "context_size": c.context_size,
        "prepend_bos": c.prepend_bos,
        "dataset_path": c.dataset_path,
        "training_architecture": c.arch,
        "norm_scaling_factor": norm_scaling_factor,
        "interp_sae_config": c.to_dict(),
    }
    return cfg


def saelens_state_dict(sae: SAE) -> dict[str, Tensor]:
    """The tensors of sae_weights.safetensors (contiguous CPU copies)."""
    names = ["W_enc", "W_dec", "b_enc", "b_dec"]
    tensors = {n: getattr(sae, n).detach() for n in names}
    if sae.cfg.arch == "jumprelu":
        tensors["threshold"] = sae.threshold.detach()
    elif sae.cfg.arch == "batchtopk":
        if int(sae.threshold_updates) == 0:
            raise ValueError(
                "this BatchTopK SAE has no inference threshold yet (it is estimated during "
                "training), so it cannot be saved as a jumprelu folder; train it first"
            )
        tensors["threshold"] = sae.threshold.to(sae.b_enc.dtype).expand(sae.cfg.d_sae)
    return {k: v.cpu().contiguous().clone() for k, v in tensors.items()}


def save_sae(
    sae: SAE,
    folder: str | Path,
    *,
    feature_density: Float[Tensor, " d_sae"] | None = None,
    metrics: Mapping[str, Any] | None = None,
    norm_scaling_factor: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `sae` as a SAELens folder, atomically; returns the folder.

    feature_density: per-latent firing frequency in [0, 1]; stored as SAELens's log10 "sparsity".
    metrics: written to metrics.json (NaN/inf become null).
    norm_scaling_factor: the s the SAE was trained with (on x * s); a folded copy is saved so the
        folder reads raw activations. `sae` itself is not modified.
    overwrite: replace an existing folder; otherwise an existing folder raises FileExistsError.
    """
    raw = folded_copy(sae, norm_scaling_factor) if norm_scaling_factor is not None else sae
    if feature_density is not None and feature_density.shape != (sae.cfg.d_sae,):
        raise ValueError(
            f"feature_density must have shape [d_sae={sae.cfg.d_sae}], "
            f"got {tuple(feature_density.shape)}"
        )

    def write(tmp: Path) -> None:
        save_safetensors(tmp / WEIGHTS_FILENAME, saelens_state_dict(raw))
        dump_json(tmp / CFG_FILENAME, saelens_cfg_dict(raw, norm_scaling_factor))
        if feature_density is not None:
            log_density = log_feature_density(feature_density.detach().float().cpu())
            save_safetensors(tmp / SPARSITY_FILENAME, {"sparsity": log_density})
        if metrics is not None:
            dump_json(tmp / METRICS_FILENAME, dict(metrics))

    return write_dir_atomically(Path(folder), write, overwrite)


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file (on the CPU). A truncated or malformed file raises
    FileFormatError naming it; a missing or unreadable one, OSError with its path."""
    with open(path, "rb"):  # a missing file or a folder: Python's OSError, naming the path
        pass
    try:
        return load_file(path)
    except SafetensorError as err:
        raise FileFormatError(path, f"not a readable safetensors file ({err})") from err
    except OSError as err:
        raise oserror_with_path(err, path) from err


def load_sae(folder: str | Path, device: str = "cpu", dtype: str | None = None) -> SAE:
    """Load an SAE folder written by `save_sae` or by SAELens (standard, topk, jumprelu, and
    SAELens training checkpoints of those and batchtopk), in eval mode.

    SAELens's decoder-norm rescaling and a saved activation_scaler.json factor are folded into
    the weights, so the module always reads raw activations. dtype defaults to the folder's.
    A cfg.json without "architecture" is read as `sae.saelens_compat` describes. Any problem
    with the folder's files raises FileFormatError (an SAEError) naming the file and the field
    or tensor; a missing file, FileNotFoundError.
    """
    from sae.registry import ARCHITECTURES  # local: the registry imports every architecture

    folder = Path(folder)
    cfg_path, weights_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder} is not an SAE folder: {CFG_FILENAME} is missing")
    if dtype is not None and dtype.removeprefix("torch.") not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}")
    raw = load_json(cfg_path)
    tensors = read_safetensors(weights_path)
    try:
        fold = read_activation_scaler(raw, folder)
        cfg = config_from_saelens(raw, tensors, device, dtype, scaler_folded=fold is not None)
    except FileFormatError:
        raise
    except SAEError as err:
        raise FileFormatError(cfg_path, str(err)) from err
    try:
        state = state_dict_from_saelens(raw, cfg, tensors)
    except SAEError as err:
        raise FileFormatError(weights_path, str(err)) from err
    try:
        sae = ARCHITECTURES[cfg.arch](cfg)
    except (RuntimeError, OverflowError) as err:  # e.g. an init value beyond the dtype's range
        raise FileFormatError(
            cfg_path, f"cannot build the {cfg.arch} SAE it describes ({err}); check its fields"
        ) from err
    sae.load_state_dict({k: v.to(sae.state_dict()[k].dtype) for k, v in state.items()})
    if fold is not None:
        sae.fold_input_scale_(fold)
    return sae.eval()


def load_sparsity(folder: str | Path) -> Tensor | None:
    """The stored log10 feature density [d_sae], or None when the folder has none."""
    path = Path(folder) / SPARSITY_FILENAME
    if not path.is_file():
        return None
    tensors = read_safetensors(path)
    if "sparsity" not in tensors:
        raise FileFormatError(path, f"no 'sparsity' tensor; it holds {sorted(tensors)}")
    return tensors["sparsity"]


def load_metrics(folder: str | Path) -> dict[str, Any] | None:
    """The folder's metrics.json, or None when it has none (FileFormatError when it is not a
    JSON object)."""
    path = Path(folder) / METRICS_FILENAME
    return load_json(path) if path.is_file() else None
