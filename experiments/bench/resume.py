"""What a resume costs: `interp train-sae --resume` from a mid-run checkpoint, with the stream's
saved shuffle buffer (the default) and with the old path that recomputes every skipped batch,
side by side in one process, against the uninterrupted run.

1. The whole run: `train_sae_run(cfg)` on the default model (layer 12, TopK, the command's
   defaults but `--tokens`), checkpointing every `--every` steps and keeping them all.
2. The cut: a copy of the run folder as it was right after the checkpoint at `--at` steps
   (later checkpoints, the SAE folders and later history rows removed), as if killed there.
3. Resume from the cut twice: as `interp train-sae --resume` does it (the checkpoint's
   `stream.safetensors` restores the shuffle buffer), and through a batch source that cannot
   take a state, which makes the trainer recompute the skipped batches (the behaviour before
   resumable streams). Both must end with the whole run's weights, bit for bit.

Reported: wall seconds of each (model load, training and held-out evaluation included), the
resume's cost beyond the steps it still had to train (`overhead` = resume - (1 - at/steps) x
whole), as a share of the whole run.

    python experiments/bench/resume.py --tokens 409600 --at 20 --every 4
"""

import argparse
import json
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch
from safetensors.torch import load_file

import interp.train_sae.run as train_run
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.run import train_sae_run

HOOK = "blocks.12.hook_resid_post"


def cut_at(run: Path, step: int, out: Path) -> None:
    """A copy of `run` as it stood right after its checkpoint at `step`."""
    shutil.copytree(run, out)
    shutil.rmtree(out / "saes")
    for folder in (out / "checkpoints").glob("step_*"):
        if int(folder.name.removeprefix("step_")) > step:
            shutil.rmtree(folder)
    (out / "checkpoints" / "LATEST").write_text(f"step_{step:08d}\n")
    rows = (out / "history.jsonl").read_text().splitlines()
    tokens = step * json.loads((run / "cfg.json").read_text())["train"]["batch_tokens"]
    kept = [r for r in rows if json.loads(r)["tokens"] <= tokens]
    (out / "history.jsonl").write_text("".join(f"{r}\n" for r in kept))


def timed(cfg: TrainSAEConfig) -> float:
    start = time.perf_counter()
    train_sae_run(cfg)
    return time.perf_counter() - start


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "saes" / HOOK / "sae_weights.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=409_600)
    parser.add_argument("--at", type=int, default=20, help="step of the checkpoint resumed from")
    parser.add_argument("--every", type=int, default=4, help="checkpoint every N steps")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_resume_"))
    base = TrainSAEConfig()
    train = replace(
        base.train, total_tokens=args.tokens, checkpoint_every=args.every, keep_checkpoints=10_000
    )
    cfg = replace(base, train=train, out=str(tmp / "whole"))
    steps = cfg.train.total_steps
    whole = timed(cfg)

    cut_at(tmp / "whole", args.at, tmp / "restored")
    cut_at(tmp / "whole", args.at, tmp / "recomputed")
    restored = timed(replace(cfg, resume=str(tmp / "restored")))

    real = train_run.batch_source

    def stateless(*a, **kw):  # a factory without `state=`: the trainer recomputes the skip
        make = real(*a, **kw)
        return lambda skip_tokens: make(skip_tokens)

    train_run.batch_source = stateless
    try:
        recomputed = timed(replace(cfg, resume=str(tmp / "recomputed")))
    finally:
        train_run.batch_source = real

    same = {
        name: all(torch.equal(weights(tmp / name)[k], w) for k, w in weights(tmp / "whole").items())
        for name in ("restored", "recomputed")
    }
    remaining = (1 - args.at / steps) * whole
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "tokens": args.tokens,
        "steps": steps,
        "resumed_at": args.at,
        "whole_s": round(whole, 1),
        "resume_restored_s": round(restored, 1),
        "resume_recomputed_s": round(recomputed, 1),
        "overhead_restored_share": round((restored - remaining) / whole, 3),
        "overhead_recomputed_share": round((recomputed - remaining) / whole, 3),
        "bit_identical": same,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
