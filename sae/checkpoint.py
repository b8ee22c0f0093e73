"""Training checkpoints: everything needed to continue a run exactly where it stopped.

    run_dir/checkpoints/
      LATEST                        name of the newest complete checkpoint, e.g. "step_00000100"
      step_00000100/
        trainer.json                format, step, tokens_seen, TrainConfig, SAE names in order,
                                    norm scaling factors
        rng.pt                      torch CPU (and CUDA) and Python RNG states of rank 0
        saes/<name>/
          sae_config.json           SAEConfig
          weights.safetensors       state_dict of the SAE as trained (normalised space, unfolded)
          optimizer.pt              Adam state_dict
          firing.safetensors        FiringStats (dead-latent counters, density windows)

Each checkpoint folder is written to a temporary name and renamed, then LATEST is replaced
atomically, so a crash at any moment leaves the previous checkpoint intact and named by LATEST.
"""

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sae.base import SAE
from sae.config import SAEConfig, TrainConfig
from sae.firing import FiringStats
from sae.fsutil import dump_json, write_dir_atomically, write_text_atomically

FORMAT_VERSION = 1


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


def _write(tmp: Path, state: TrainState) -> None:
    dump_json(
        tmp / "trainer.json",
        {
            "format": FORMAT_VERSION,
            "step": state.step,
            "tokens_seen": state.tokens_seen,
            "train_config": state.train_cfg.to_dict(),
            "sae_names": list(state.saes),
            "norm_scaling_factors": state.norm_factors,
        },
    )
    torch.save(rng_state(), tmp / "rng.pt")
    for name, sae in state.saes.items():
        folder = tmp / "saes" / name
        folder.mkdir(parents=True)
        dump_json(folder / "sae_config.json", sae.cfg.to_dict())
        tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
        save_file(tensors, folder / "weights.safetensors")
        torch.save(state.optimizers[name].state_dict(), folder / "optimizer.pt")
        save_file(state.firing[name].state_dict(), folder / "firing.safetensors")


def write_checkpoint(run_dir: Path, state: TrainState) -> Path:
    """Write step_<step> atomically, point LATEST at it, and delete the oldest beyond
    keep_checkpoints. Returns the checkpoint folder."""
    root = Path(run_dir) / "checkpoints"
    folder = write_dir_atomically(
        root / checkpoint_name(state.step), lambda tmp: _write(tmp, state), overwrite=True
    )
    write_text_atomically(root / "LATEST", folder.name + "\n")
    existing = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in existing[: -state.train_cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder LATEST names, or None when the run has no checkpoint yet."""
    latest = Path(run_dir) / "checkpoints" / "LATEST"
    if not latest.is_file():
        return None
    return latest.parent / latest.read_text().strip()


def read_checkpoint(folder: Path, make_optimizer: Any) -> TrainState:
    """Rebuild a TrainState from a checkpoint folder; `make_optimizer(sae, train_cfg)` builds
    each SAE's optimizer before its saved state is loaded. Restores the RNG states too."""
    from sae.registry import ARCHITECTURES

    meta = json.loads((folder / "trainer.json").read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: checkpoint format {meta.get('format')} != {FORMAT_VERSION}")
    train_cfg = TrainConfig.from_dict(meta["train_config"])
    state = TrainState(train_cfg, {}, {}, {}, meta["norm_scaling_factors"])
    state.step, state.tokens_seen = meta["step"], meta["tokens_seen"]
    for name in meta["sae_names"]:
        sub = folder / "saes" / name
        cfg = SAEConfig.from_dict(json.loads((sub / "sae_config.json").read_text()))
        sae = ARCHITECTURES[cfg.arch](cfg)
        sae.load_state_dict(load_file(sub / "weights.safetensors", device=str(sae.W_enc.device)))
        state.saes[name] = sae
        opt = make_optimizer(sae, train_cfg)
        opt.load_state_dict(torch.load(sub / "optimizer.pt", weights_only=True))
        state.optimizers[name] = opt
        firing = FiringStats(cfg.d_sae, train_cfg.dead_window)
        firing.load_state_dict(load_file(sub / "firing.safetensors"))
        state.firing[name] = firing
    set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    return state
