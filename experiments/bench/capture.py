"""Capture throughput: interp's activation stream against SAELens's ActivationsStore.

Both run the same TransformerBridge model (SAELens accepts it as a HookedRootModule), the same
hook, context length, contexts per forward pass (`--batch-size`), training batch and shuffle
buffer size, and deliver batches of `--batch-tokens` activation rows with BOS rows kept. Each
is timed from construction to the last of `--n-batches` batches, so tokenisation, forward
passes and shuffling all count. SAELens is measured twice: on the raw text (its default path,
one `model.to_tokens` call per document) and on the very contexts that interp packs, given as
a pre-tokenised dataset (forward pass and mixing buffer only). Two floor rows time bare forward
passes on the packed contexts, stopping at the hook's block: the bridge's own forward pass
(what SAELens runs) and `interp.capture.capture` alone (for a `resid_post` hook, its fast path
through the HF modules with fused attention). Their rates count every row computed, while the
shuffling streams count rows delivered, and keep half a buffer undelivered at the end: with the
defaults they compute 8 forward passes to deliver 6 batches, so 75% of a floor is full speed.

    python experiments/bench/capture.py --out bench_capture.json

The default model is the embedded one when it is shipped, else a random Llama of the same
shape (16 blocks, d_model 128, vocab 2048) built in a temporary folder.
"""

import argparse
import itertools
import json
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import torch

from interp.capture.core import activation_stream, capture
from interp.data import batched, iter_contexts, iter_texts
from interp.models import default_model_dir, load_model
from interp.organism.architecture import build_random_organism  # noqa: E402

FLOOR = "bridge forward passes only (floor)"
FAST_FLOOR = "interp capture() only (floor)"


def resolve_model_spec(spec: str, tmp: Path) -> tuple[str, str]:
    """(spec to load, description): the embedded model if shipped, else a built stand-in."""
    if spec == "default" and not (default_model_dir() / "config.json").is_file():
        return str(
            build_random_organism(tmp / "llama16", vocab_size=2048)
        ), "random Llama 16x128 (embedded model absent)"
    return spec, spec


def time_batches(make: Callable[[], Iterator], n_batches: int) -> tuple[float, int]:
    """(seconds, rows) to build a source and draw n_batches batches from it."""
    start = time.perf_counter()
    rows = 0
    source = make()
    for batch in itertools.islice(source, n_batches):
        rows += (next(iter(batch.values())) if isinstance(batch, dict) else batch).shape[0]
    return time.perf_counter() - start, rows


def interp_source(model, docs: list[str], args, hook: str) -> Callable[[], Iterator]:
    def make() -> Iterator:
        contexts = iter_contexts(docs, model.tokenizer, args.ctx_len)
        return activation_stream(
            model,
            batched(contexts, args.batch_size),
            [hook],
            batch_tokens=args.batch_tokens,
            buffer_tokens=args.buffer_tokens,
            exclude_bos=False,
        )

    return make


def saelens_source(model, dataset, args, hook: str) -> Callable[[], Iterator]:
    from sae_lens.training.activations_store import ActivationsStore

    def make() -> Iterator:
        return ActivationsStore(
            model=model,
            dataset=dataset,
            streaming=False,
            hook_name=hook,
            hook_head_index=None,
            context_size=args.ctx_len,
            d_in=model.cfg.d_model,
            # SAELens's buffer holds n_batches_in_buffer * context_size rows.
            n_batches_in_buffer=args.buffer_tokens // args.ctx_len,
            total_training_tokens=10**9,
            store_batch_size_prompts=args.batch_size,
            train_batch_size_tokens=args.batch_tokens,
            prepend_bos=True,
            normalize_activations="none",
            device=torch.device("cpu"),
            dtype="float32",
        )

    return make


def forward_only_source(model, contexts: list, args, hook: str) -> Callable[[], Iterator]:
    """The floor: forward passes that stop at the hook's block, on already packed contexts."""
    stop = int(hook.split(".")[1]) + 1

    def make() -> Iterator:
        with torch.no_grad():
            for batch in batched(iter(contexts), args.batch_size):
                model(batch, return_type=None, stop_at_layer=stop, use_cache=False)
                yield batch.reshape(-1)

    return make


def capture_only_source(model, contexts: list, args, hook: str) -> Callable[[], Iterator]:
    """interp's floor: `capture` on already packed contexts, no tokenising and no shuffling."""

    def make() -> Iterator:
        for batch in batched(iter(contexts), args.batch_size):
            yield capture(model, batch, [hook])[hook].flatten(0, 1)

    return make


def sources(model, args, hook: str) -> dict[str, Callable[[], Iterator]]:
    from datasets import Dataset

    n_contexts = (
        args.n_batches * args.batch_tokens // args.ctx_len + args.buffer_tokens // args.ctx_len
    )
    docs = list(itertools.islice(iter_texts("default"), 40 * n_contexts))  # ample text
    contexts = list(
        itertools.islice(iter_contexts(docs, model.tokenizer, args.ctx_len), 2 * n_contexts)
    )
    pretokenized = Dataset.from_dict({"tokens": [c.tolist() for c in contexts]})
    return {
        FLOOR: forward_only_source(model, contexts, args, hook),
        FAST_FLOOR: capture_only_source(model, contexts, args, hook),
        "interp activation_stream": interp_source(model, docs, args, hook),
        "SAELens ActivationsStore (text)": saelens_source(
            model, Dataset.from_dict({"text": docs}), args, hook
        ),
        "SAELens ActivationsStore (pre-tokenised)": saelens_source(model, pretokenized, args, hook),
    }


def run(args) -> dict:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        spec, described = resolve_model_spec(args.model, Path(tmp))
        model = load_model(spec, device="cpu", dtype="float32")
    layer = model.cfg.n_layers // 2 if args.layer is None else args.layer
    hook = f"blocks.{layer}.hook_resid_post"
    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so background load hits every method alike
        for name, make in sources(model, args, hook).items():
            seconds, rows = time_batches(make, args.n_batches)
            results.setdefault(name, []).append(rows / seconds)
    best = {name: max(v) for name, v in results.items()}
    ours = best["interp activation_stream"]
    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "model": described,
        "hook": hook,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "tokens_per_s": results,
        "best_tokens_per_s": best,
        "speedup_vs": {n: ours / v for n, v in best.items() if "SAELens" in n},
        "fraction_of_floor": {n: v / best[FLOOR] for n, v in best.items() if "floor" not in n},
    }


def print_table(report: dict) -> None:
    print(f"model: {report['model']}  hook: {report['hook']}  ({report['machine']})")
    print(f"{'method':45s} {'tokens/s (best)':>16s} {'all runs':>24s}")
    for name, runs in report["tokens_per_s"].items():
        all_runs = ", ".join(f"{r:,.0f}" for r in runs)
        print(f"{name:45s} {report['best_tokens_per_s'][name]:16,.0f} {all_runs:>24s}")
    for name, ratio in report["speedup_vs"].items():
        print(f"interp / {name}: {ratio:.2f}x")
    for name, frac in report["fraction_of_floor"].items():
        print(f"{name}: {frac:.0%} of the bridge forward-only floor")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default", help="'default', a local HF folder or hub name")
    p.add_argument("--layer", type=int, default=None, help="block of resid_post (default middle)")
    p.add_argument("--ctx-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32, help="contexts per forward pass")
    p.add_argument("--batch-tokens", type=int, default=4096, help="rows per delivered batch")
    p.add_argument("--buffer-tokens", type=int, default=16384, help="shuffle buffer rows")
    p.add_argument("--n-batches", type=int, default=6, help="batches drawn per measurement")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repetitions (best kept)")
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
