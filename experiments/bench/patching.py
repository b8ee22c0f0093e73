"""Patching speed, side by side with TransformerLens's `patching` module in one run: the same
model (the default model's TransformerBridge), prompts and metric.

    python experiments/bench/patching.py [--device cpu] [--threads 1] [--json out.json]

For the resid_pre grid (16 layers x 15 positions of a held-out name story) and the per-head grid
(16 x 4, all positions) it times TransformerLens's `get_act_patch_*` (one forward pass per
patch), our exact patching folded into batches, our one-patch-at-a-time reference path,
attribution patching and integrated gradients (16 steps); checks that exact equals
TransformerLens's values; and reports the speed ratios and the correlation of the gradient
methods with exact patching. Each timing is the best of --repeats runs.
"""

import argparse
import json
import os
import time

# TransformerLens's patching loops draw tqdm bars; tqdm reads this when it is first imported.
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from scipy.stats import pearsonr, spearmanr  # noqa: E402

import interp  # noqa: E402
from interp.patching import (  # noqa: E402
    attribution_patch,
    exact_patch,
    logit_diff_metric,
    prompt_pair,
    single_token,
)

CLEAN = "When Rose and Paul went to the river, Rose gave a book to"
CORRUPT = "When Rose and Paul went to the river, Paul gave a book to"
TL_FUNCS = {"resid": "get_act_patch_resid_pre", "heads": "get_act_patch_attn_head_out_all_pos"}


def best(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_grid(model, grid, a, b, metric, repeats) -> dict:
    from transformer_lens import patching

    _, cache = model.run_with_cache(a)
    tl_fn = getattr(patching, TL_FUNCS[grid])
    t_tl, tl = best(lambda: tl_fn(model, b, cache, lambda lg: metric(lg).mean()), 1)
    t_ex, ex = best(lambda: exact_patch(model, a, b, metric, grid), repeats)
    t_one, _ = best(lambda: exact_patch(model, a, b, metric, grid, folded=False), 1)
    t_at, at = best(lambda: attribution_patch(model, a, b, metric, grid), repeats)
    t_ig, ig = best(lambda: attribution_patch(model, a, b, metric, grid, steps=16), repeats)
    eff, n = ex.effect.flatten(), ex.values.numel()
    return {
        "cells": n,
        "seconds": {
            "transformer_lens": round(t_tl, 3),
            "exact_folded": round(t_ex, 3),
            "exact_one_at_a_time": round(t_one, 3),
            "attribution": round(t_at, 3),
            "ig16": round(t_ig, 3),
        },
        "patches_per_s": {
            "transformer_lens": round(n / t_tl, 1),
            "exact_folded": round(n / t_ex, 1),
        },
        "ratios": {
            "exact_vs_tl": round(t_tl / t_ex, 1),
            "attribution_vs_tl_exact": round(t_tl / t_at, 1),
            "ig16_vs_tl_exact": round(t_tl / t_ig, 1),
        },
        "max_abs_diff_exact_vs_tl": float((ex.values - tl.float().cpu()).abs().max()),
        "correlation_with_exact": {
            m: {
                "pearson": round(float(pearsonr(eff, r.effect.flatten())[0]), 4),
                "spearman": round(float(spearmanr(eff, r.effect.flatten())[0]), 4),
            }
            for m, r in (("attribution", at), ("ig16", ig))
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = interp.load_model(device=args.device, dtype="float32")
    a, b = prompt_pair(model, CLEAN, CORRUPT)
    metric = logit_diff_metric(single_token(model, " Paul"), single_token(model, " Rose"))
    report = {
        "device": str(next(model.parameters()).device),
        "threads": args.threads,
        "torch": torch.__version__,
        "prompt_tokens": a.shape[1],
        "grids": {g: bench_grid(model, g, a, b, metric, args.repeats) for g in TL_FUNCS},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        from sae.fsutil import dump_json

        dump_json(__import__("pathlib").Path(args.json), report)


if __name__ == "__main__":
    main()
