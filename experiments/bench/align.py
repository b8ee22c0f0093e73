"""DPO steps per second: ours (`interp.align.train_dpo`) against TRL's `DPOTrainer`, on the
default model, the same preference pairs and the same settings.

    python experiments/bench/align.py --pairs /tmp/align_study/jailbreak_pairs.jsonl

Settings shared by both: full fine-tuning in float32 on the CPU, AdamW at a constant lr 5e-5,
beta 0.1, 16 pairs a step, the sigmoid loss, reference log-probabilities computed once before
training (TRL: `precompute_ref_log_probs=True`), no gradient checkpointing, one torch thread.
Each run's rate is (steps - 1) / (time of the last step's end - time of the first step's end),
from per-step callbacks, so that setup (TRL's dataset tokenisation, our reference pass) is not
counted. Runs alternate (ours, TRL, ours, TRL, ...) so that load on a shared machine falls on
both. TRL tokenises the pairs' texts itself (no BOS; EOS appended): its sequences differ from
ours by a token or two, a negligible difference in work.
"""

import argparse
import statistics
import time

import torch

from interp.align import PreferencePairs, train_dpo
from interp.align.train_config import DPOSettings
from interp.models import load_hf


def ours(pairs: PreferencePairs, steps: int) -> float:
    model, tok = load_hf("default", device="cpu", dtype="float32")
    stamps: list[float] = []
    cfg = DPOSettings(steps=steps, lr=5e-5, warmup_steps=0, grad_clip=None, checkpoint_every=0)
    train_dpo(model, tok, pairs, cfg, on_step=lambda s, n, m: stamps.append(time.perf_counter()))
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def trl(pairs: PreferencePairs, steps: int, folder: str) -> float:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, tok = load_hf("default", device="cpu", dtype="float32")
    data = Dataset.from_list(
        [
            {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in pairs.rows()
        ]
    )
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = DPOConfig(
        output_dir=folder,
        max_steps=steps,
        per_device_train_batch_size=16,
        learning_rate=5e-5,
        lr_scheduler_type="constant",
        warmup_steps=0,
        beta=0.1,
        loss_type=["sigmoid"],
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        precompute_ref_log_probs=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10_000,
        max_grad_norm=0.0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model, args=args, train_dataset=data, processing_class=tok, callbacks=[Stamp()]
    )
    trainer.train()
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True, help="a pairs jsonl (interp align dpo --save-pairs)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = PreferencePairs.load(args.pairs)
    rates: dict[str, list[float]] = {"ours": [], "trl": []}
    for r in range(args.rounds):
        rates["ours"].append(ours(pairs, args.steps))
        rates["trl"].append(trl(pairs, args.steps, f"/tmp/trl_bench_{r}"))
        print(
            f"round {r + 1}: ours {rates['ours'][-1]:.2f} steps/s, "
            f"TRL {rates['trl'][-1]:.2f} steps/s",
            flush=True,
        )
    a, b = statistics.median(rates["ours"]), statistics.median(rates["trl"])
    print(
        f"median: ours {a:.2f} steps/s, TRL {b:.2f} steps/s, ratio {a / b:.2f}x "
        f"({len(pairs)} pairs, 16 a step, {args.steps} steps, {args.threads} thread(s))"
    )


if __name__ == "__main__":
    main()
