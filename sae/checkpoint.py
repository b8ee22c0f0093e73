"""Training checkpoints: everything needed to continue a run exactly where it stopped.

    run_dir/checkpoints/
      LATEST                        name of the newest complete checkpoint, e.g. "step_00000100"
      step_00000100/
        trainer.json                format, step, tokens_seen, TrainConfig, SAE names in order,
                                    norm scaling factors, the sha256 of every other file
                                    ("files") and of trainer.json's own other fields
                                    ("trainer_sha256")
        rng.safetensors             torch CPU (and CUDA) RNG states of rank 0; Python's in metadata
        stream.safetensors          (optional) the batch stream's state (`sae.batches`): a resume
                                    restores it instead of recomputing the skipped batches
        saes/<name>/
          sae_config.json           SAEConfig
          weights.safetensors       state_dict of the SAE as trained (normalised space, unfolded)
          optimizer.safetensors     Adam state tensors; param_groups as JSON metadata
          firing.safetensors        FiringStats (dead-latent counters, density windows)

Nothing is pickled (format 3; format 2's rng.pt and optimizer.pt are still read, with
`weights_only=True`). Each checkpoint folder is written to a temporary name and renamed, then LATEST is replaced
atomically, so a crash at any moment leaves the previous checkpoint intact and named by LATEST.
A resume verifies every checksum first (`usable_checkpoint`): a checkpoint that fails (a flipped
bit, a truncated or missing file) is passed over with a `CheckpointWarning` for the next older
one, which is why `TrainConfig.keep_checkpoints` defaults to 2.
"""

import hashlib
import json
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from sae.base import SAE
from sae.config import SAEConfig, TrainConfig
from sae.errors import CheckpointError, CheckpointWarning, SAEError
from sae.firing import FiringStats
from sae.fsutil import (
    dump_json,
    finite_or_none,
    load_json,
    save_safetensors,
    sha256_file,
    write_dir_atomically,
    write_text_atomically,
)

FORMAT_VERSION = 3
"""3: no pickle (RNG and Adam state in safetensors). 2: trainer.json holds checksums; still read.
1 (no checksums) is still read, unverified, with a warning."""
TRAINER_FILE = "trainer.json"


@dataclass
class TrainState:
    """The state of a run between two steps."""

    train_cfg: TrainConfig
    saes: dict[str, SAE]
    optimizers: dict[str, torch.optim.Optimizer]
    firing: dict[str, FiringStats]
    norm_factors: dict[str, float | None]
    step: int = 0
    tokens_seen: int = 0
    stream_state: dict[str, Tensor] | None = None
    """The batch stream's `state_dict()` at this step, when it has one (see `sae.batches`)."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_rng(path: Path) -> None:
    state = rng_state()
    tensors = {"torch": state["torch"]}
    tensors |= {f"cuda.{i}": t for i, t in enumerate(state.get("cuda", []))}
    version, internal, gauss = state["python"]
    python = json.dumps([version, list(internal), gauss])
    save_safetensors(path, tensors, {"python": python})


def _load_rng(path: Path) -> dict[str, Any]:
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
        version, internal, gauss = json.loads(f.metadata()["python"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    state = {"torch": tensors["torch"], "python": (version, tuple(internal), gauss)}
    return state | ({"cuda": cuda} if cuda else {})


def save_optimizer_state(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """An optimizer's state as safetensors (no pickle): tensors `state.<param>.<key>`, its
    param_groups as JSON metadata. Also used by other training loops (`interp.align.dpo`)."""
    sd = optimizer.state_dict()
    tensors = {
        f"state.{index}.{key}": (value if torch.is_tensor(value) else torch.tensor(value)).cpu()
        for index, entry in sd["state"].items()
        for key, value in entry.items()
    }
    save_safetensors(path, tensors, {"param_groups": json.dumps(sd["param_groups"])})


def load_optimizer_state(path: Path, device: str) -> dict[str, Any]:
    """What `save_optimizer_state` wrote, as `optimizer.load_state_dict` takes it."""
    with safe_open(path, "pt", device=device) as f:
        groups = json.loads(f.metadata()["param_groups"])
        state: dict[int, dict[str, Tensor]] = {}
        for name in f.keys():  # noqa: SIM118
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = f.get_tensor(name)
    for group in groups:
        group["betas"] = tuple(group["betas"]) if "betas" in group else None
    return {"state": state, "param_groups": groups}


def _meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of trainer.json's fields other than trainer_sha256, in a canonical form (sorted
    keys; NaN as null, as dump_json writes it), so that it is the same before and after the
    round trip through the file."""
    rest = finite_or_none({k: v for k, v in meta.items() if k != "trainer_sha256"})
    return hashlib.sha256(json.dumps(rest, sort_keys=True, allow_nan=False).encode()).hexdigest()


STREAM_FILE = "stream.safetensors"


def _write(tmp: Path, state: TrainState) -> None:
    _save_rng(tmp / "rng.safetensors")
    if state.stream_state is not None:
        save_safetensors(tmp / STREAM_FILE, state.stream_state)
    for name, sae in state.saes.items():
        folder = tmp / "saes" / name
        folder.mkdir(parents=True)
        dump_json(folder / "sae_config.json", sae.cfg.to_dict())
        tensors = {k: v.detach().cpu() for k, v in sae.state_dict().items()}
        save_safetensors(folder / "weights.safetensors", tensors)
        save_optimizer_state(folder / "optimizer.safetensors", state.optimizers[name])
        save_safetensors(folder / "firing.safetensors", state.firing[name].state_dict())
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    meta = {
        "format": FORMAT_VERSION,
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "train_config": state.train_cfg.to_dict(),
        "sae_names": list(state.saes),
        "norm_scaling_factors": state.norm_factors,
        "files": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files},
    }
    meta["trainer_sha256"] = _meta_digest(meta)
    dump_json(tmp / TRAINER_FILE, meta)  # last: its checksums cover every file above


def _step_of(folder: Path) -> int:
    return int(folder.name.removeprefix("step_"))


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """The run's checkpoint folders, newest step first (temporary folders are hidden, so never
    listed)."""
    root = Path(run_dir) / "checkpoints"
    found = [p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=_step_of, reverse=True)


def write_checkpoint(run_dir: Path, state: TrainState) -> Path:
    """Write step_<step> atomically, point LATEST at it, and delete the oldest beyond
    keep_checkpoints, and any of later steps (left by a run that resumed from an older
    checkpoint: they belong to a history that was abandoned). Returns the checkpoint folder."""
    root = Path(run_dir) / "checkpoints"
    folder = write_dir_atomically(
        root / checkpoint_name(state.step), lambda tmp: _write(tmp, state), overwrite=True
    )
    write_text_atomically(root / "LATEST", folder.name + "\n")
    existing = checkpoint_folders(run_dir)
    stale = [p for p in existing if _step_of(p) > state.step]
    kept = [p for p in existing if _step_of(p) <= state.step]
    for old in stale + kept[state.train_cfg.keep_checkpoints :]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder LATEST names, or None when the run has no checkpoint yet (unverified; a
    resume uses `usable_checkpoint`)."""
    latest = Path(run_dir) / "checkpoints" / "LATEST"
    if not latest.is_file():
        return None
    return latest.parent / latest.read_text().strip()


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """trainer.json of `folder` after checking every sha256 it records (and its own); raises
    CheckpointError saying which file is missing, corrupt or unreadable. A format-1 checkpoint
    has no checksums: it is returned unverified, with a CheckpointWarning."""
    path = folder / TRAINER_FILE
    try:
        meta = load_json(path)
    except (OSError, SAEError) as err:
        raise CheckpointError(f"{path}: {getattr(err, 'problem', None) or err}") from err
    fmt = meta.get("format")
    if fmt == 1:
        warnings.warn(
            f"checkpoint {folder} predates checksums (format 1); it is used unverified",
            CheckpointWarning,
            stacklevel=3,
        )
        return meta
    if fmt not in (2, FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format {fmt!r}; this version reads 1 to 3")
    if meta.get("trainer_sha256") != _meta_digest(meta):
        raise CheckpointError(f"{path} does not match its own checksum (edited or corrupted)")
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{path} lists no files")
    for rel, expected in files.items():
        try:
            actual = sha256_file(folder / rel)
        except OSError as err:
            raise CheckpointError(f"{folder / rel} cannot be read ({err.strerror or err})") from err
        if actual != expected:
            raise CheckpointError(
                f"{folder / rel} does not match the sha256 in {TRAINER_FILE} (corrupted)"
            )
    return meta


def usable_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of the run that passes `verify_checkpoint`: the one LATEST names,
    else the newest other. Each one passed over gets a CheckpointWarning saying why and which
    is used instead. None when the run has no checkpoint at all; CheckpointError naming every
    checkpoint and its problem when none passes."""
    candidates = checkpoint_folders(run_dir)
    latest = latest_checkpoint(run_dir)
    if latest is not None and latest in candidates:
        candidates.remove(latest)
        candidates.insert(0, latest)
    problems = []
    for folder in candidates:
        try:
            verify_checkpoint(folder)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        for problem in problems:
            warnings.warn(
                f"checkpoint skipped: {problem}; resuming from the older {folder} instead",
                CheckpointWarning,
                stacklevel=2,
            )
        return folder
    if problems:
        raise CheckpointError(
            f"no usable checkpoint in {Path(run_dir) / 'checkpoints'}: " + "; ".join(problems)
        )
    return None


def read_checkpoint(folder: Path, make_optimizer: Any) -> TrainState:
    """Rebuild a TrainState from a checkpoint folder (verified by the caller); `make_optimizer(
    sae, train_cfg)` builds each SAE's optimizer before its saved state is loaded. Restores the
    RNG states too."""
    from sae.registry import ARCHITECTURES

    meta = load_json(folder / TRAINER_FILE)
    if meta.get("format") not in (1, 2, FORMAT_VERSION):
        raise CheckpointError(f"{folder}: checkpoint format {meta.get('format')!r} is unknown")
    train_cfg = TrainConfig.from_dict(meta["train_config"])
    state = TrainState(train_cfg, {}, {}, {}, meta["norm_scaling_factors"])
    state.step, state.tokens_seen = meta["step"], meta["tokens_seen"]
    for name in meta["sae_names"]:
        sub = folder / "saes" / name
        cfg = SAEConfig.from_dict(load_json(sub / "sae_config.json"))
        sae = ARCHITECTURES[cfg.arch](cfg)
        sae.load_state_dict(load_file(sub / "weights.safetensors", device=str(sae.W_enc.device)))
        state.saes[name] = sae
        opt = make_optimizer(sae, train_cfg)
        if (sub / "optimizer.safetensors").is_file():
            opt.load_state_dict(
                load_optimizer_state(sub / "optimizer.safetensors", str(sae.W_enc.device))
            )
        else:  # format 2
            opt.load_state_dict(torch.load(sub / "optimizer.pt", weights_only=True))
        state.optimizers[name] = opt
        firing = FiringStats(cfg.d_sae, train_cfg.dead_window)
        firing.load_state_dict(load_file(sub / "firing.safetensors"))
        state.firing[name] = firing
    if (folder / STREAM_FILE).is_file():
        state.stream_state = load_file(folder / STREAM_FILE)
    if (folder / "rng.safetensors").is_file():
        set_rng_state(_load_rng(folder / "rng.safetensors"))
    else:  # format 2
        set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    return state
