"""Generation speed with steering hooks against unsteered generation on the same prompts.

Greedy KV-cached generation (`interp.generation.generate`) of `--new-tokens` tokens for a batch
of `--batch` equal-length held-out chat prompts on the default model, timed in interleaved
rounds (unsteered, steered at one layer, steered at every layer 1..15, directional ablation at
every layer), so that load on a shared machine hits all variants alike. Reports the median
seconds per variant and each one's ratio to unsteered (the acceptance bound is 1.3x).

    python experiments/bench/steering.py --out bench_steering.json
"""

import argparse
import json
import platform
import random
import statistics
import time
from datetime import date

import torch

from interp.generation import generate
from interp.models import load_model
from interp.organism import corpus
from interp.steering.vector import SteeringVector, ablation_hooks


def prompts(model, batch: int) -> list[str]:
    """`batch` held-out chat prompts of one token length (generate takes no padding)."""
    rng = random.Random(0)
    by_len: dict[int, list[str]] = {}
    while True:
        text = corpus.chat_prompt(corpus.request(rng, "heldout", rng.random() < 0.5)[0])
        group = by_len.setdefault(model.to_tokens(text).shape[1], [])
        group.append(text)
        if len(group) == batch:
            return group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu", dtype="float32")
    d, n = int(model.cfg.d_model), int(model.cfg.n_layers)
    gen = torch.Generator().manual_seed(0)
    vector = SteeringVector(
        0.01 * torch.randn(n - 1, d, generator=gen),
        tuple(range(1, n)),
        None,
        d,
        convention="absolute",
    )
    texts = prompts(model, args.batch)
    variants = {
        "unsteered": [],
        "steered, 1 layer": vector.select([n // 2]).interventions(1.0),
        f"steered, {n - 1} layers": vector.interventions(1.0),
        "steered, 1 layer, generated positions": vector.select([n // 2]).interventions(
            1.0, "generated"
        ),
        "directional ablation, every layer": ablation_hooks(model, vector.directions[0]),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for hooks in variants.values():  # warm-up
        generate(model, texts, hooks, 4, stop_at_eos=False)
    for _ in range(args.rounds):
        for name, hooks in variants.items():
            start = time.perf_counter()
            generate(model, texts, hooks, args.new_tokens, stop_at_eos=False)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["unsteered"])
    rows = {
        name: {"median_s": statistics.median(t), "ratio": statistics.median(t) / base}
        for name, t in times.items()
    }
    report = {
        "date": str(date.today()),
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} torch thread(s)",
        "model": args.model,
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "results": rows,
    }
    for name, row in rows.items():
        print(f"{name:42s} {row['median_s']:.3f} s  {row['ratio']:.2f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
