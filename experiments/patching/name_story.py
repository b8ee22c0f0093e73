"""The name-story study: which heads and layers of the default model carry the indirect object,
found five ways (exact patching, attribution patching, integrated gradients, ablation, edges),
and how far the cheap methods agree with the exact one.

    python experiments/patching/name_story.py            # writes experiments/patching/results/

Prompt pairs: 8 held-out name stories ("When Nina and Ruth arrived at the theater, Ruth handed
the kite to"), corrupted by replacing the second subject with the indirect object (the answer
flips); metric: logit(IO) - logit(S) at the last token, mean over pairs. Agreement: Spearman
rank correlation of the effects and overlap of the top-k cells by |effect|.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

import interp
from interp.patching import (
    ablate,
    attribution_patch,
    circuit_graph,
    edge_attribution,
    exact_edges,
    exact_patch,
    heatmap,
    make_task,
)
from interp.patching.figures import agreement
from interp.viz.html import write_html
from sae.fsutil import dump_json

HERE = Path(__file__).resolve().parent


def topk(scores: torch.Tensor, k: int) -> set[int]:
    flat = torch.nan_to_num(scores.flatten(), nan=0.0).abs()
    return set(torch.argsort(flat, descending=True)[:k].tolist())


def compare(exact: torch.Tensor, other: torch.Tensor, ks=(5, 10)) -> dict:
    ok = ~torch.isnan(exact.flatten())
    a, b = exact.flatten()[ok], other.flatten()[ok]
    out = {"spearman": float(spearmanr(a, b)[0])}
    for k in ks:
        out[f"top{k}_overlap"] = len(topk(a, k) & topk(b, k)) / k
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = interp.load_model(device="cpu")
    task = make_task(model, "names", n=args.pairs)
    clean, corrupt, metric = task.clean, task.corrupt, task.metric
    timings, results, figures = {}, {}, []

    def timed(name, fn, *fn_args, **kwargs):
        t = time.perf_counter()
        res = fn(model, *fn_args, **kwargs)
        timings[name] = round(time.perf_counter() - t, 2)
        return res

    for grid in ("heads", "resid", "mlp"):
        r = {
            "exact": timed(f"{grid}/exact", exact_patch, clean, corrupt, metric, grid),
            "attribution": timed(
                f"{grid}/attribution",
                attribution_patch,
                clean,
                corrupt,
                metric,
                grid,
            ),
            "ig": timed(
                f"{grid}/ig",
                attribution_patch,
                clean,
                corrupt,
                metric,
                grid,
                steps=args.steps,
            ),
        }
        if grid == "heads":
            for kind in ("mean", "resample"):
                r[f"{kind}-ablation"] = timed(
                    f"heads/{kind}-ablation",
                    ablate,
                    clean,
                    metric,
                    "heads",
                    kind=kind,
                    reference=corrupt,
                    corrupt=corrupt,
                )
        results[grid] = r
        figures.append(heatmap(r["exact"], title=f"exact patching, {grid} grid (name stories)"))
        figures.append(agreement(r["exact"], r["attribution"]))
        figures.append(agreement(r["exact"], r["ig"]))
    for kind in ("mean", "resample"):
        res = results["heads"][f"{kind}-ablation"]
        figures.append(heatmap(res, title=f"{kind} ablation of heads (change in logit diff)"))

    edges = {
        "exact": timed("edges/exact", exact_edges, clean, corrupt, metric),
        "eap": timed("edges/eap", edge_attribution, clean, corrupt, metric),
        "eap-ig": timed(
            "edges/eap-ig",
            edge_attribution,
            clean,
            corrupt,
            metric,
            steps=args.steps,
        ),
    }
    figures += [
        circuit_graph(edges[m], 20, title=f"name-story circuit, top 20 edges ({m})")
        for m in ("exact", "eap-ig")
    ]

    summary = {
        "prompts": [model.to_string(t[1:]) for t in clean[:3]],
        "clean": results["heads"]["exact"].clean,
        "corrupt": results["heads"]["exact"].corrupt,
        "timings_s": timings,
        "top": {
            f"{grid}/{m}": [(label, round(v, 4)) for label, v in res.top(8)]
            for grid, r in results.items()
            for m, res in r.items()
        },
        "agreement_with_exact": {
            f"{grid}/{m}": compare(r["exact"].effect, res.effect)
            for grid, r in results.items()
            for m, res in r.items()
            if m != "exact"
        },
        "edges_top": {
            m: [(s, t, round(v, 4)) for s, t, v in e.circuit(12)] for m, e in edges.items()
        },
        "edges_agreement_with_exact": {
            m: compare(edges["exact"].scores, e.scores, ks=(10, 20))
            for m, e in edges.items()
            if m != "exact"
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    dump_json(args.out / "name_story.json", summary)
    write_html(args.out / "name_story.html", figures, "interp patching: name stories")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
