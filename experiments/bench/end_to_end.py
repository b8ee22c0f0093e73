"""The whole command as a user times it: `interp train-sae` against SAELens's runner, each in a
fresh Python process (imports count), on the same model, hook, SAE, token budget and number of
held-out tokens, with a held-out evaluation on both sides.

- interp: `python -m interp train-sae --layer L --d-sae D --k K --tokens N --eval-tokens E`
  (loads the model, estimates the norm, trains, evaluates EV / CE recovered / KL with standard
  errors, writes the SAE folder and the HTML report). Its phases are read from one more run in
  this process, timed around the library's own steps (`prepare`, training up to the first
  step = the norm estimate, training, `evaluate_run`, `write_report`).
- SAELens: a child process that imports sae_lens, loads the same TransformerBridge, runs
  `LanguageModelSAETrainingRunner` with the config of `experiments/bench/train_sae.py`
  (`saelens_config`: every knob both have set alike) on interp's packed contexts, then
  `sae_lens.evals.run_evals` with CE loss, KL, variance and sparsity metrics over the same number
  of held-out tokens (the contexts after the training ones, from its own activation store).

    python experiments/bench/end_to_end.py --tokens 409600 --out e2e.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

HERE = Path(__file__).resolve().parent


def cli_args(args) -> list[str]:
    return [
        "--layer", str(args.layer), "--d-sae", str(args.d_sae), "--k", str(args.k),
        "--tokens", str(args.tokens), "--eval-tokens", str(args.eval_tokens),
        "--device", "cpu", "--dtype", "float32",
    ]  # fmt: skip


def make_cfg(args, out: Path | None):
    """The config that `cli_args` gives `interp train-sae`."""
    from interp.train_sae.config import TrainSAEConfig

    base = TrainSAEConfig()
    return replace(
        base,
        layer=(args.layer,),
        d_sae=args.d_sae,
        eval_tokens=args.eval_tokens,
        device="cpu",
        dtype="float32",
        out=None if out is None else str(out),
        sae=replace(base.sae, k=args.k),
        train=replace(base.train, total_tokens=args.tokens),
    )


def interp_command(args, out: Path) -> float:
    """Wall seconds of `python -m interp train-sae ...` in a fresh process."""
    cmd = [sys.executable, "-m", "interp", "train-sae", *cli_args(args), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def interp_phases(args, out: Path) -> dict[str, float]:
    """The same run in this process, timed phase by phase (imports excluded: done already)."""
    import interp.train_sae.evaluate as evaluate
    import interp.train_sae.figures as figures
    import interp.train_sae.run as run

    cfg = make_cfg(args, out)
    marks: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                marks[name] = marks.get(name, 0.0) + time.perf_counter() - start

        return wrapper

    first_step: list[float] = []
    saved = run.prepare, evaluate.evaluate_run, figures.write_report
    run.prepare = timed("load (prepare)", run.prepare)
    evaluate.evaluate_run = timed("held-out evaluation", evaluate.evaluate_run)
    figures.write_report = timed("report", figures.write_report)
    start = time.perf_counter()
    try:
        run.train_sae_run(
            cfg, on_step=lambda *a: first_step or first_step.append(time.perf_counter())
        )
    finally:
        run.prepare, evaluate.evaluate_run, figures.write_report = saved
    total = time.perf_counter() - start
    load = marks["load (prepare)"]
    train_start = start + load
    marks["norm estimate + first step"] = first_step[0] - train_start
    rest = total - sum(marks.values())
    marks["training (later steps) and writing"] = rest
    return {k: round(v, 1) for k, v in marks.items()} | {"total": round(total, 1)}


SAELENS_CHILD = r"""
import json, math, sys, time
start = time.perf_counter()
sys.path.insert(0, {here!r})
import itertools
import torch
from datasets import Dataset
from sae_lens import LanguageModelSAETrainingRunner
from sae_lens.evals import EvalConfig, run_evals
from sae_lens.training.activation_scaler import ActivationScaler
import train_sae as bench
from interp.models import load_model
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.source import contexts, text_source
imported = time.perf_counter()
cfg = TrainSAEConfig.from_dict(json.loads({cfg!r}))
model = load_model("default", device="cpu", dtype="float32")
loaded = time.perf_counter()
hook = f"blocks.{layer}.hook_resid_post"
eval_batches = math.ceil(cfg.eval_tokens / (cfg.ctx_len * cfg.batch_size))
n = bench.saelens_contexts_needed(cfg) + (eval_batches + 1) * cfg.batch_size
packed = list(itertools.islice(contexts(model, text_source(cfg), cfg.ctx_len), n))
dataset = Dataset.from_dict({{"tokens": [c.tolist() for c in packed]}})
runner = LanguageModelSAETrainingRunner(
    bench.saelens_config(cfg, hook, model.cfg.d_model, {out!r}),
    override_dataset=dataset, override_model=model,
)
sae = runner.run()
trained = time.perf_counter()
metrics, _ = run_evals(
    sae, runner.activations_store, model, ActivationScaler(),
    EvalConfig(batch_size_prompts=cfg.batch_size, n_eval_reconstruction_batches=eval_batches,
               compute_kl=True, compute_ce_loss=True, n_eval_sparsity_variance_batches=eval_batches,
               compute_variance_metrics=True, compute_sparsity_metrics=True),
)
done = time.perf_counter()
print(json.dumps({{
    "imports": imported - start, "load": loaded - imported,
    "pack + train + write": trained - loaded, "held-out evaluation": done - trained,
    "explained_variance": metrics["reconstruction_quality"].get("explained_variance"),
    "ce_loss_score": metrics["model_performance_preservation"].get("ce_loss_score"),
}}))
"""


def saelens_command(args, out: Path) -> tuple[float, dict]:
    cfg = make_cfg(args, None)
    code = SAELENS_CHILD.format(
        here=str(HERE), cfg=json.dumps(cfg.to_dict()), layer=args.layer, out=str(out)
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    phases = json.loads(proc.stdout.strip().splitlines()[-1])
    return seconds, {
        k: round(v, 4 if k in ("explained_variance", "ce_loss_score") else 1)
        for k, v in phases.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=409_600)
    parser.add_argument("--eval-tokens", type=int, default=16_384)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = interp_command(args, Path(tmp) / "interp")
        theirs, their_phases = saelens_command(args, Path(tmp) / "saelens")
        phases = interp_phases(args, Path(tmp) / "interp_phases")
        metrics = json.loads(
            (
                Path(tmp)
                / "interp"
                / "saes"
                / f"blocks.{args.layer}.hook_resid_post"
                / "metrics.json"
            ).read_text()
        )
    import torch

    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "settings": vars(args),
        "interp_command_s": round(ours, 1),
        "saelens_command_s": round(theirs, 1),
        "speedup": round(theirs / ours, 2),
        "interp_phases_s": phases,
        "saelens_phases": their_phases,
        "interp_held_out": {
            k: metrics.get(k)
            for k in (
                "explained_variance",
                "explained_variance_se",
                "ce_loss_recovered",
                "ce_loss_recovered_se",
                "n_tokens",
            )
        },
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
