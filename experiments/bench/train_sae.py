"""SAE training end to end: interp's `train-sae` path against SAELens's training runner.

Both train a TopK SAE in one process on the same TransformerBridge model (SAELens accepts it as
`override_model`, a HookedRootModule), hook, width, k, training batch, learning rate, context
length, token budget, shuffle buffer (16 batches), contexts per forward pass and the same token
contexts, with wandb off and no network:

- interp: `interp train-sae`'s own pieces (`interp.train_sae.source.batch_source`, the config's
  `sae_config` and `train_config`) fed to `sae.training.train`, i.e. `interp train-sae` without
  its held-out evaluation and report.
- SAELens: `LanguageModelSAETrainingRunner` with `LanguageModelSAERunnerConfig` and
  `TopKTrainingSAEConfig`, given the contexts that interp packs (`interp.data.iter_contexts`) as
  a pre-tokenised `datasets.Dataset` (`override_dataset`). Packing and building the dataset
  count in its time, since interp's time includes its own tokenisation.

Aligned where the two recipes have the same knob: BOS positions are not trained on (SAELens
`seqpos_slice=(1, None)`; every context starts with BOS), input scaling (both
'expected_average_only_in', norm estimated from 10 batches), lr schedule (linear warm-up over 1%
of the steps, linear decay to 0 over the last 20%), the dead-latent window of AuxK, gradient
clipping (both clip each step's gradient to norm 1 by default). Left at each
library's default: the AuxK coefficient (interp 1/32, SAELens 1.0), SAELens's
`rescale_acts_by_decoder_norm=True` (interp keeps unit-norm decoder rows), initialisation.

Throughput is training tokens / wall-clock seconds from the start (model already loaded) to the
saved SAE, so capture, shuffling and optimisation all count. Quality is measured on the same
held-out contexts (the ones after all those trained on) with interp's own metrics:
`interp.train_sae.evaluate.evaluate_sae` (explained variance, L0, CE loss recovered, KL), SAELens's SAE
read back with `sae.io.load_sae` from the folder it saved.

    python experiments/bench/train_sae.py --out bench_train_sae.json
    python experiments/bench/train_sae.py --device cuda ...   # LM in bf16, SAEs under bf16 autocast
    python experiments/bench/train_sae.py --end-to-end --tokens 409600   # whole commands, with
        # held-out evaluation on both sides, in fresh processes (experiments/bench/end_to_end.py)

The default model is the embedded one when it is shipped, else a random Llama of the same
shape (16 blocks, d_model 128, vocab 1024) built in a temporary folder.
"""

import argparse
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

from interp.models import default_model_dir, load_model  # noqa: E402
from interp.organism.architecture import build_random_organism  # noqa: E402
from interp.train_sae.config import TrainSAEConfig  # noqa: E402
from interp.train_sae.evaluate import evaluate_sae  # noqa: E402
from interp.train_sae.source import (  # noqa: E402
    batch_source,
    contexts,
    eval_batches,
    text_source,
    train_contexts_used,
)
from sae.io import load_sae  # noqa: E402

OURS, THEIRS = "interp", "SAELens"


def resolve_model_spec(spec: str, tmp: Path) -> tuple[str, str]:
    """(spec to load, description): the embedded model if shipped, else a built stand-in."""
    if spec == "default" and not (default_model_dir() / "config.json").is_file():
        described = "random Llama 16x128, vocab 1024 (embedded model absent)"
        return str(build_random_organism(tmp / "llama16", vocab_size=1024)), described
    return spec, spec


def train_ours(model, cfg: TrainSAEConfig, hook: str, d_in: int, run_dir: Path):
    """interp's path: live activation stream into `sae.training.train`. (sae, seconds)."""
    from sae.training import train

    start = time.perf_counter()
    batches = batch_source(model, cfg, [hook])
    sae_cfgs = {hook: cfg.sae_config(hook, d_in)}
    result = train(sae_cfgs, cfg.train_config(), batches, run_dir=run_dir)
    seconds = time.perf_counter() - start
    tokens = cfg.train.total_tokens
    if result.tokens_seen != tokens:
        raise RuntimeError(f"interp trained on {result.tokens_seen} tokens, not {tokens}")
    return result.saes[hook], seconds


def saelens_config(cfg: TrainSAEConfig, hook: str, d_in: int, out_dir: Path):
    """SAELens's runner config with every knob that interp also has set to interp's value."""
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    ours, sae_cfg = cfg.train_config(), cfg.sae_config(hook, d_in)
    return LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(
            d_in=d_in,
            d_sae=sae_cfg.d_sae,
            k=sae_cfg.k,
            dtype="float32",
            device=cfg.device,
            normalize_activations="expected_average_only_in",
        ),
        model_name=cfg.model,
        hook_name=hook,
        dataset_path="interp packed contexts",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=cfg.ctx_len,
        seqpos_slice=(1, None),
        prepend_bos=True,
        n_batches_in_buffer=16 * ours.batch_tokens // (cfg.ctx_len - 1),
        training_tokens=ours.total_tokens,
        store_batch_size_prompts=cfg.batch_size,
        train_batch_size_tokens=ours.batch_tokens,
        lr=ours.lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=ours.warmup_steps,
        lr_decay_steps=math.ceil(ours.lr_decay_fraction * ours.total_steps),
        dead_feature_window=max(1, ours.dead_window // ours.batch_tokens),
        n_batches_for_norm_estimate=ours.norm_estimation_batches,
        device=cfg.device,
        dtype="float32",
        autocast=cfg.device.startswith("cuda"),  # bf16 autocast, as interp's trainer on CUDA
        seed=ours.seed,
        logger=LoggingConfig(log_to_wandb=False),
        n_checkpoints=0,
        checkpoint_path=None,
        output_path=str(out_dir),
        verbose=False,
    )


def saelens_contexts_needed(cfg: TrainSAEConfig) -> int:
    """Contexts given to SAELens: what interp trains on, plus the batches SAELens draws (and
    does not train on) to estimate the norm, plus its shuffle buffer (16 training batches and
    one refill), so that it needs no second epoch."""
    ours = cfg.train_config()
    extra_rows = (ours.norm_estimation_batches + 17) * ours.batch_tokens
    return train_contexts_used(cfg) + math.ceil(extra_rows / (cfg.ctx_len - 1)) + cfg.batch_size


def train_saelens(model, cfg: TrainSAEConfig, hook: str, d_in: int, out_dir: Path):
    """SAELens's runner on interp's packed contexts. (sae as our module, seconds, contexts)."""
    from datasets import Dataset
    from sae_lens import LanguageModelSAETrainingRunner

    start = time.perf_counter()
    n = saelens_contexts_needed(cfg)
    packed = list(itertools.islice(contexts(model, text_source(cfg), cfg.ctx_len), n))
    dataset = Dataset.from_dict({"tokens": [c.tolist() for c in packed]})
    runner = LanguageModelSAETrainingRunner(
        saelens_config(cfg, hook, d_in, out_dir), override_dataset=dataset, override_model=model
    )
    runner.run()
    seconds = time.perf_counter() - start
    read = runner.activations_store.n_dataset_processed
    if read > len(packed):  # a second epoch: SAELens trained on some contexts twice
        raise RuntimeError(f"SAELens read {read} contexts of the {len(packed)} given")
    return load_sae(out_dir, device=cfg.device), seconds, {"given": len(packed), "read": read}


def held_out_metrics(model, sae, hook: str, batches) -> dict:
    """interp's metrics of one SAE on the held-out contexts."""
    result = evaluate_sae(model, sae, hook, batches)
    keep = (
        "explained_variance",
        "l0",
        "ce_loss_recovered",
        "ce_clean",
        "ce_spliced",
        "ce_zero",
        "normalized_mse",
        "dead_fraction",
        "n_tokens",
    )
    return {k: result.metrics.scalars()[k] for k in keep} | {"kl_div": result.kl}


def git_state() -> str:
    """HEAD and the files changed in the working tree: the code that was measured."""
    import subprocess

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], capture_output=True, text=True).stdout.rstrip("\n")

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return git("rev-parse", "--short", "HEAD") + (f" + changes in {dirty}" if dirty else "")


def make_cfg(args, spec: str) -> TrainSAEConfig:
    return TrainSAEConfig.from_dict(
        {
            "model": spec,
            "layer": [args.layer],
            "d_sae": args.d_sae,
            "ctx_len": args.ctx_len,
            "batch_size": args.batch_size,
            "eval_tokens": args.eval_tokens,
            "device": args.device,
            "seed": args.seed,
            "sae": {"arch": "topk", "k": args.k},
            "train": {
                "total_tokens": args.tokens,
                "batch_tokens": args.batch_tokens,
                "lr": args.lr,
            },
        }
    )


def run(args) -> dict:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        spec, described = resolve_model_spec(args.model, Path(tmp))
        # On CUDA the LM runs in bf16 for both (interp's default there), the SAEs in fp32
        # under bf16 autocast; on the CPU everything is fp32.
        dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
        model = load_model(spec, device=args.device, dtype=dtype)
        if args.layer is None:
            args.layer = model.cfg.n_layers // 2
        cfg = make_cfg(args, spec)
        hook = f"blocks.{args.layer}.hook_resid_post"
        d_in = model.cfg.d_model
        ours, ours_s = train_ours(model, cfg, hook, d_in, Path(tmp) / "interp")
        theirs, theirs_s, contexts = train_saelens(model, cfg, hook, d_in, Path(tmp) / "saelens")
        # Held out from both: the contexts after every one SAELens was given (interp reads fewer).
        batches = eval_batches(model, cfg, saelens_contexts_needed(cfg))
        metrics = {
            OURS: held_out_metrics(model, ours, hook, batches),
            THEIRS: held_out_metrics(model, theirs, hook, batches),
        }
    seconds = {OURS: ours_s, THEIRS: theirs_s}
    return {
        "date": date.today().isoformat(),
        "machine": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "git": git_state(),
        "model": described,
        "hook": hook,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "saelens_contexts": contexts,
        "seconds": seconds,
        "tokens_per_s": {name: cfg.train.total_tokens / s for name, s in seconds.items()},
        "speedup": theirs_s / ours_s,
        "held_out": metrics,
    }


def print_table(report: dict) -> None:
    print(f"model: {report['model']}  hook: {report['hook']}  ({report['machine']})")
    rows = [("wall-clock s", "seconds", ".1f"), ("tokens/s", "tokens_per_s", ",.0f")]
    metric_rows = [
        ("explained variance", "explained_variance", ".4f"),
        ("L0", "l0", ".2f"),
        ("CE loss recovered", "ce_loss_recovered", ".4f"),
        ("KL", "kl_div", ".4f"),
        ("dead fraction", "dead_fraction", ".3f"),
    ]
    print(f"{'':22s} {OURS:>12s} {THEIRS:>12s}")
    for label, key, fmt in rows:
        print(f"{label:22s} {report[key][OURS]:12{fmt}} {report[key][THEIRS]:12{fmt}}")
    for label, key, fmt in metric_rows:
        ours, theirs = report["held_out"][OURS][key], report["held_out"][THEIRS][key]
        print(f"{label:22s} {ours:12{fmt}} {theirs:12{fmt}}")
    print(f"speed-up interp / SAELens (tokens/s): {report['speedup']:.2f}x")


def main() -> None:
    if "--end-to-end" in sys.argv:  # the whole commands in fresh processes: end_to_end.py
        import end_to_end

        sys.argv.remove("--end-to-end")
        return end_to_end.main()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default", help="'default', a local HF folder or hub name")
    p.add_argument("--layer", type=int, default=None, help="block of resid_post (default middle)")
    p.add_argument("--d-sae", type=int, default=1024, help="SAE width")
    p.add_argument("--k", type=int, default=16, help="active latents per token")
    p.add_argument("--tokens", type=int, default=163_840, help="training tokens (BOS excluded)")
    p.add_argument("--batch-tokens", type=int, default=4096, help="tokens per optimiser step")
    p.add_argument(
        "--lr",
        type=float,
        default=TrainSAEConfig().train.lr,
        help="peak Adam lr (default: train-sae's)",
    )
    p.add_argument("--ctx-len", type=int, default=128, help="tokens per context, BOS included")
    p.add_argument("--batch-size", type=int, default=64, help="contexts per LM forward pass")
    p.add_argument("--eval-tokens", type=int, default=8192, help="held-out tokens for metrics")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16 LM, bf16 autocast)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = p.parse_args()
    warnings.filterwarnings("ignore", module="sae_lens")
    report = run(args)
    print_table(report)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
