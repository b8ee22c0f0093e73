"""A `train-sae` run folder: where it goes, its saved config, resuming it, its training curves.

<out>/cfg.json               the TrainSAEConfig (the run repeats from it)
<out>/checkpoints/           every train.checkpoint_seconds, on SIGINT/SIGTERM, at the end
<out>/saes/<hook>/           SAELens folders: cfg.json, sae_weights.safetensors,
                             sparsity.safetensors, metrics.json
<out>/history.jsonl          training curves (tokens, loss, L0, explained variance, ...)
<out>/report.html            curves and feature-density histograms, self-contained
"""

import itertools
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.config import config_diff
from interp.errors import InterpError, InterpWarning
from interp.train_sae.config import RESUMABLE_CHANGES, TrainSAEConfig
from sae.fsutil import load_json, write_text_atomically

CONFIG_FILE = "cfg.json"
OnStep = Callable[[int, int, dict[str, dict[str, float]]], None]
"""on_step(step, tokens, {hook: {metric: value}}), called after every optimiser step."""


def rank() -> int:
    """This process's data-parallel rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def default_out(cfg: TrainSAEConfig, hooks: list[str]) -> Path:
    """runs/<model>-<arch>-<hooks>, with -2, -3, ... appended when it exists."""
    model = Path(cfg.model).name or "model"
    tag = "+".join(h.replace("blocks.", "L").replace(".hook_", "-") for h in hooks)
    base = Path("runs") / f"{model}-{cfg.sae.arch}-{tag}"
    for i in itertools.count(1):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not path.exists():
            return path
    raise AssertionError("unreachable")


def check_new_out(cfg: TrainSAEConfig) -> None:
    """Refuse an --out that exists, before anything is loaded or written."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and cfg.out is None:
        raise InterpError("a data-parallel run (torchrun) needs an explicit --out for all ranks")
    out = Path(cfg.out) if cfg.out is not None else None
    if out is not None and out.is_dir() and not any(out.iterdir()):
        return  # an empty folder (made by hand, or by a run killed before its first file)
    if rank() == 0 and out is not None and out.exists():
        hint = (
            f"continue it with --resume {cfg.out}"
            if (Path(cfg.out) / CONFIG_FILE).is_file()
            else "pick another --out"
        )
        raise InterpError(f"output folder {cfg.out!r} already exists; {hint}")


def saved_config(run: str | Path) -> TrainSAEConfig:
    """The config a run folder was started with (its cfg.json)."""
    run = Path(run)
    saved_path = run / CONFIG_FILE
    if not saved_path.is_file():
        raise InterpError(f"cannot resume {str(run)!r}: it has no {CONFIG_FILE} (not a run folder)")
    data = load_json(saved_path)  # FileFormatError naming the file: not JSON, not an object
    missing = sorted(set(TrainSAEConfig().to_dict()) - set(data))
    if missing:
        raise InterpError(f"{saved_path} lacks the fields {missing}; it is damaged")
    try:
        return TrainSAEConfig.from_dict(data)
    except (ValueError, TypeError) as err:
        raise InterpError(
            f"cannot resume {str(run)!r}: {saved_path} is not a valid config ({err})"
        ) from err


def check_resume(cfg: TrainSAEConfig) -> Path:
    """The run folder of --resume, whose saved options must equal the asked ones (but for
    `RESUMABLE_CHANGES`: the folder, the device and a new lr)."""
    run = Path(cfg.resume)
    saved = saved_config(run).to_dict()
    diff = config_diff(saved, cfg.to_dict(), RESUMABLE_CHANGES)
    if diff:
        raise InterpError(
            f"cannot resume {str(run)!r} with different options ({'; '.join(diff)}); "
            "resume with the run's own options or start a new run with --out"
        )
    return run


def create(run_dir: Path, cfg: TrainSAEConfig) -> None:
    """Make the run folder and save its config (rank 0 only: other ranks write nothing)."""
    if rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(run_dir / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2))


def latest_checkpoint_text(run_dir: Path) -> str:
    """'the checkpoint is <folder>' for a run's newest checkpoint, or that it has none."""
    from sae.checkpoint import latest_checkpoint

    found = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    return f"the checkpoint is {found}" if found else f"{run_dir} has no checkpoint yet"


class History:
    """Appends every `every`-th step's metrics to history.jsonl, then calls the caller's hook.

    A resumed run trains again the steps after its checkpoint, so on its first step the rows
    from that step on are dropped first: the curves hold each step once.
    """

    def __init__(self, path: Path, on_step: OnStep | None, every: int) -> None:
        self.path, self.on_step, self.every = path, on_step, every
        self.first = True

    def repair(self) -> None:
        """Rewrite history.jsonl without the lines that are not rows (a resumed run's file may
        end in the half-written line of the killed process)."""
        if self.path.exists() and rank() == 0:
            rows = read_history(self.path.parent)
            write_text_atomically(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def _drop_from(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = [row for row in read_history(self.path.parent) if row["step"] < step]
        write_text_atomically(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def __call__(self, step: int, tokens: int, metrics: dict[str, dict[str, float]]) -> None:
        if self.first and rank() == 0:
            self._drop_from(step)
        self.first = False
        if step % self.every == 0 and rank() == 0:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, "tokens": tokens, "metrics": metrics}) + "\n")
        if self.on_step is not None:
            self.on_step(step, tokens, metrics)


def _history_row(line: str) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    ok = isinstance(row, dict) and isinstance(row.get("step"), int) and "metrics" in row
    return row if ok else None


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of history.jsonl (none when the file is missing). Lines that are not rows (the
    half-written last line of a killed run, a damaged line) are left out with an `InterpWarning`
    naming the file and the lines: the curves are a record, not a reason to stop."""
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        return []
    rows, bad = [], []
    for number, line in enumerate(path.read_bytes().decode(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        row = _history_row(line)
        if row is None:
            bad.append(number)
        else:
            rows.append(row)
    if bad:
        warnings.warn(
            f"{path}: lines {bad[:5]} are not history rows; left out", InterpWarning, stacklevel=2
        )
    return rows


def check_checkpoint_matches(run_dir: Path, saes: dict[str, Any]) -> None:
    """The run's cfg.json must describe the SAEs its checkpoint holds (same hooks and shapes);
    a damaged or edited cfg.json is refused here instead of failing later."""
    from sae.checkpoint import checkpoint_folders

    folders = checkpoint_folders(run_dir)
    if not folders:
        return
    held = {p.parent.name: p for p in (folders[0] / "saes").glob("*/sae_config.json")}
    if set(held) != set(saes):
        raise InterpError(
            f"{run_dir / CONFIG_FILE} names the hooks {sorted(saes)} but the checkpoint "
            f"{folders[0]} holds {sorted(held)}; the config is damaged or edited"
        )
    for name, path in held.items():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a damaged checkpoint file: the resume's checksums deal with it
        want = saes[name].to_dict()
        diff = [k for k in ("arch", "d_in", "d_sae", "k") if saved.get(k) != want.get(k)]
        if diff:
            raise InterpError(
                f"{run_dir / CONFIG_FILE} does not match the checkpoint's SAE {name!r} "
                f"({', '.join(f'{k}: {saved.get(k)!r} vs {want.get(k)!r}' for k in diff)})"
            )
