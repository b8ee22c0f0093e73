"""Explainer speed: interp's SHAP and LIME against plain `shap` and `lime` on the same model,
texts and target.

The target is the refusal margin of the default model on held-out chat prompts:
logit(" I") - logit(" Sure") after "User: ...\nAssistant:" (it answers harmful requests with
"I can't help with that." and benign ones with "Sure! ...").

- plain shap: `shap.Explainer(f, shap.maskers.Text(tokenizer))` (the Partition explainer),
  max_evals 500, where f is what a user writes around a transformers model: tokenise the
  masked strings, run `AutoModelForCausalLM` (loaded from interp.organism.WEIGHTS_DIR) on them,
  read the target at each row's last token. Measured as a user runs it (the fp16 weights as
  fp16, shap's batches) and tuned (fp32).
- plain LIME: `LimeTextExplainer()` defaults (5,000 samples, word split), classifier_fn = the
  same f, in chunks of 64 strings (tuned) on the fp32 model.
- interp: `explain_shap` (Partition, token masking, max_evals 500) and `explain_lime` (1,000
  samples, the default; and 5,000, to compare the rate at LIME's own sample count), fp32, on
  the bridge returned by `load_model`. Their masked rows are scored over their prefix tree
  by the bridge's HF modules (`interp.explain.scoring`), Partition's masks in one batch.

Each row is the mean over the texts of the wall time per text and of the model evaluations per
second (masked inputs asked for / wall time); the JSON also holds the machine's load averages
(`os.getloadavg`) before and after. A warm-up text runs first for every method; then
the methods take turns text by text, so that the shared machine's changing load falls on all.

    python experiments/bench/explain.py --out bench_explain.json
"""

import argparse
import json
import os
import platform
import random
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch

from interp.explain import Target, explain_lime, explain_shap
from interp.models import load_model
from interp.organism import WEIGHTS_DIR, corpus

TARGET, CONTRAST = " I", " Sure"


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        corpus.chat_prompt(corpus.request(rng, "heldout", harmful=i % 2 == 0)[0]) for i in range(n)
    ]


def hf_score_fn(model, tokenizer, chunk: int | None) -> tuple[Callable, list[int]]:
    """f(strings) -> [n] target scores, as a user writes it; counts the strings it is given."""
    tokenizer.padding_side = "left"
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (TARGET, CONTRAST)]
    calls = [0]

    @torch.inference_mode()
    def f(strings) -> np.ndarray:
        strings = [str(s) for s in strings]
        calls[0] += len(strings)
        out = []
        step = chunk or len(strings)
        for i in range(0, len(strings), step):
            batch = [tokenizer.bos_token + s for s in strings[i : i + step]]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logits = model(**enc, position_ids=pos).logits[:, -1].float()
            out.append((logits[:, ids[0]] - logits[:, ids[1]]).numpy())
        return np.concatenate(out)

    return f, calls


def plain_shap(model, tokenizer) -> Callable[[str], int]:
    import shap

    f, calls = hf_score_fn(model, tokenizer, None)
    explainer = shap.Explainer(f, shap.maskers.Text(tokenizer))

    def run(text: str) -> int:
        calls[0] = 0
        explainer([text], max_evals=500, silent=True)
        return calls[0]

    return run


def plain_lime(model, tokenizer) -> Callable[[str], int]:
    from lime.lime_text import LimeTextExplainer

    f, calls = hf_score_fn(model, tokenizer, 64)
    explainer = LimeTextExplainer()

    def run(text: str) -> int:
        calls[0] = 0
        explainer.explain_instance(text, lambda s: f(s)[:, None], labels=(0,))
        return calls[0]

    return run


def interp_shap(bridge) -> Callable[[str], int]:
    target = Target(TARGET, CONTRAST)
    pad = bridge.tokenizer.pad_token_id
    return lambda text: explain_shap(bridge, text, target, baseline=pad, max_evals=500).evaluations


def interp_lime(bridge, num_samples: int) -> Callable[[str], int]:
    target = Target(TARGET, CONTRAST)
    pad = bridge.tokenizer.pad_token_id
    return lambda text: (
        explain_lime(bridge, text, target, baseline=pad, num_samples=num_samples).evaluations
    )


def measure(
    runs: dict[str, Callable[[str], int]], prompts: list[str], warmup: str
) -> dict[str, dict[str, float]]:
    """Each method on each text, methods interleaved text by text (so that a change in the
    shared machine's load falls on every method alike); the means per method."""
    for run in runs.values():
        run(warmup)
    walls: dict[str, list[float]] = {name: [] for name in runs}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for text in prompts:
        for name, run in runs.items():
            start = time.perf_counter()
            evals = run(text)
            wall = time.perf_counter() - start
            walls[name].append(wall)
            rates[name].append(evals / wall)
    return {
        name: {
            "seconds_per_text": float(np.mean(walls[name])),
            "evals_per_s": float(np.mean(rates[name])),
        }
        for name in runs
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--skip-fp16", action="store_true", help="leave out the fp16 user rows")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts, warmup = texts(args.texts), texts(1, seed=99)[0]
    tokenizer = AutoTokenizer.from_pretrained(WEIGHTS_DIR)
    fp32 = AutoModelForCausalLM.from_pretrained(WEIGHTS_DIR, dtype=torch.float32).eval()
    bridge = load_model("default", device="cpu", dtype="float32")
    runs = {}
    if not args.skip_fp16:
        fp16 = AutoModelForCausalLM.from_pretrained(WEIGHTS_DIR).eval()  # the stored fp16
        runs["shap Text masker, fp16 (as a user runs it)"] = plain_shap(fp16, tokenizer)
    runs["shap Text masker, fp32 (tuned)"] = plain_shap(fp32, tokenizer)
    runs["interp SHAP Partition, token masking"] = interp_shap(bridge)
    runs["LIME defaults, 5000 samples, chunks of 64, fp32 (tuned)"] = plain_lime(fp32, tokenizer)
    runs["interp LIME, 5000 samples"] = interp_lime(bridge, 5000)
    runs["interp LIME, 1000 samples (default)"] = interp_lime(bridge, 1000)
    load_before = os.getloadavg()
    rows = measure(runs, prompts, warmup)
    n_tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in prompts]
    result = {
        "date": str(date.today()),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "texts": prompts,
        "tokens_per_text": n_tokens,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }
    print("load average (1, 5, 15 min) before", load_before, "after", result["load_average_after"])
    width = max(map(len, rows))
    print(f"{'method':<{width}}  s/text  evals/s")
    for name, r in rows.items():
        print(f"{name:<{width}}  {r['seconds_per_text']:6.2f}  {r['evals_per_s']:7.0f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
