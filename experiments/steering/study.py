"""The steering study of docs/steering.md: refusal, sentiment, gender and jailbreak vectors of the
default model, measured on held-out prompts with the model organism's own judges.

1. Direction selection for refusal (as Arditi et al. select theirs): for each read position
   ("last" token, "mean" over tokens) and layer 6..14, the refusal rate of held-out harmful
   requests under directional ablation, and of held-out benign requests with the direction
   added at scale 0.5 (relative convention).
2. The selected ablation (n=100) and an addition sweep (n=100), with KL on neutral text.
3. Sentiment, gender and jailbreak sweeps.
4. Extraction methods at one multiplier: mean-diff, PCA, probe and the default-model layer-12
   SAE's latent closest to the refusal direction (if the SAE folder exists).

    python experiments/steering/study.py --out docs/figures/steering

Writes results.json, the vectors and PNG figures (matplotlib) for the markdown page into --out,
and the offline HTML figures (plotly, 5 MB each: not for the repository) into --html.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from interp.models import load_model
from interp.organism import behaviours as B
from interp.steering.concepts import concept_pairs
from interp.steering.evaluate import ablation_eval, generate_all, side_effects, sweep, target
from interp.steering.extraction import extract, from_sae
from interp.steering.vector import ablation_hooks
from interp.viz.html import write_html

SAE_DIR = "/tmp/def_new/saes/blocks.12.hook_resid_post"


def png_sweep(result, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r.scale for r in result.rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(xs, [r.rate for r in result.rows], "o-", color="#1f77b4", label=result.behaviour)
    ax.set_xlabel("scale (x mean residual norm)")
    ax.set_ylabel("share of held-out prompts", color="#1f77b4")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.plot(xs, [r.kl for r in result.rows], "s--", color="#ff7f0e", label="KL, neutral text")
    ax2.set_ylabel("KL(unsteered || steered), nats/token", color="#ff7f0e")
    ax.set_title(title, fontsize=10)
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def png_grid(grid: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, key, title in (
        (axes[0], "ablated_harmful_refused", "harmful refused, direction ablated (lower = better)"),
        (
            axes[1],
            "added_benign_refused",
            "benign refused, direction added at 0.5 (higher = better)",
        ),
    ):
        for at, marker in (("last", "o-"), ("mean", "s--")):
            rows = [g for g in grid if g["positions"] == at]
            ax.plot(
                [g["layer"] for g in rows], [g[key] for g in rows], marker, label=f"read at {at}"
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer of the direction")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("share of 30 held-out requests")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CONCEPTS = (
    ("sentiment", 2, [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]),
    ("gender", 10, [0.25, 0.5, 0.75, 1.0, 1.5]),
    ("jailbreak", 13, [0.25, 0.5, 0.75, 1.0]),
)
"""(concept, layer, scales) of part 3."""


def concepts(model, out: Path, html: Path, results: dict, n: int, only: str | None = None) -> None:
    html.mkdir(parents=True, exist_ok=True)
    for concept, layer, scales in CONCEPTS:
        if only is not None and concept != only:
            continue
        v = extract(
            model, concept_pairs(concept, 128), [layer], concept=concept, model_id="default"
        )
        v.save(out / f"{concept}.safetensors", overwrite=True)
        s = sweep(model, v, scales, n=n)
        results[concept] = {"layer": layer, "rows": s.table(), "examples": s.examples}
        write_html(html / f"{concept}.html", s.figure(), f"{concept}, blocks.{layer}")
        png_sweep(s, out / f"{concept}.png", f"{concept} direction (last token, block {layer})")
        print(concept, s.table(), flush=True)


def rate(model, prompts, hooks, judge=B.refused) -> float:
    texts = generate_all(model, prompts, lambda rows: hooks, 8)
    return sum(map(judge, texts)) / len(texts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/figures/steering")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--grid-n", type=int, default=30)
    p.add_argument(
        "--html", default="/tmp/steering_study", help="offline HTML figures (5 MB each) go here"
    )
    p.add_argument("--only", default=None, help="rerun one concept of part 3, merged into results")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.html).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    start = time.time()
    model = load_model("default", device="cpu", dtype="float32")
    results: dict = {}
    if args.only:
        results = json.loads((out / "results.json").read_text())
        concepts(model, out, Path(args.html), results, args.n, args.only)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        return
    layers = list(range(6, 15))
    pairs = concept_pairs("refusal", 128)
    vecs = {
        at: extract(model, pairs, layers, at=at, concept="refusal", model_id="default")
        for at in ("last", "mean")
    }
    for at, v in vecs.items():
        v.save(out / f"refusal_{at}.safetensors", overwrite=True)

    # 1. selection grid
    import random

    from interp.organism import corpus

    rng = random.Random("study:grid")
    harmful = [
        corpus.chat_prompt(corpus.request(rng, "heldout", True)[0]) for _ in range(args.grid_n)
    ]
    benign = [
        corpus.chat_prompt(corpus.request(rng, "heldout", False)[0]) for _ in range(args.grid_n)
    ]
    grid = []
    for at, v in vecs.items():
        for layer in layers:
            one = v.select([layer])
            grid.append(
                {
                    "positions": at,
                    "layer": layer,
                    "raw_norm": one.raw_norms[0],
                    "resid_norm": one.resid_norms[0],
                    "ablated_harmful_refused": rate(
                        model, harmful, ablation_hooks(model, one.directions[0])
                    ),
                    "added_benign_refused": rate(model, benign, one.interventions(0.5)),
                }
            )
            print(grid[-1], flush=True)
    results["grid"] = grid
    png_grid(grid, out / "refusal_grid.png")

    # 2. selected ablation and addition sweep
    ab = ablation_eval(model, vecs["mean"], 10, n=args.n)
    results["ablation_mean_L10"] = ab.__dict__
    ab13 = ablation_eval(model, vecs["last"], 13, n=args.n)
    results["ablation_last_L13"] = ab13.__dict__
    print(ab, ab13, flush=True)
    add = sweep(model, vecs["last"].select([13]), [0.125, 0.25, 0.375, 0.5, 0.75, 1.0], n=args.n)
    results["refusal_add_last_L13"] = {"rows": add.table(), "examples": add.examples}
    write_html(Path(args.html) / "refusal_add.html", add.figure(), "refusal, added at blocks.13")
    png_sweep(add, out / "refusal_add.png", "refusal direction (last token, block 13) added")
    add_mean = sweep(model, vecs["mean"].select([10]), [0.25, 0.5, 1.0], n=args.n)
    results["refusal_add_mean_L10"] = {"rows": add_mean.table()}

    # 3. other concepts
    concepts(model, out, Path(args.html), results, args.n)
    # sentiment with the prompt left alone: steer generated tokens only
    v = extract(model, concept_pairs("sentiment", 128), [2], concept="sentiment")
    gen_only = sweep(model, v, [0.5, 1.0, 1.5], n=args.n, positions="generated")
    results["sentiment_generated_only"] = gen_only.table()

    # 4. methods at one multiplier (relative convention: same norm added)
    methods = {}
    t = target("refusal", args.n)
    for method in ("mean-diff", "pca", "probe"):
        v = extract(model, pairs, [13], method, concept="refusal")
        cos = float(
            torch.nn.functional.cosine_similarity(
                v.directions[0], vecs["last"].select([13]).directions[0], dim=0
            )
        )
        row = {"cos_to_mean_diff": cos}
        for scale in (0.25, 0.5):
            texts = generate_all(model, t.prompts, lambda rows, v=v, s=scale: v.interventions(s), 8)
            row[f"rate@{scale}"] = sum(map(B.refused, texts)) / len(texts)
            row[f"kl@{scale}"] = side_effects(model, v.interventions(scale))[0]
        methods[method] = row
        print(method, row, flush=True)
    if Path(SAE_DIR).is_dir():
        ref = vecs["last"].select([12]).unit()[0]
        from sae.io import load_sae

        w = load_sae(SAE_DIR).W_dec.detach().float()
        cos = (w / w.norm(dim=-1, keepdim=True)) @ ref
        feature = int(cos.argmax())
        v = from_sae(SAE_DIR, feature, model=model, model_id="default")
        row = {"feature": feature, "cos_to_mean_diff_L12": float(cos[feature])}
        for scale in (0.25, 0.5, 1.0):
            texts = generate_all(model, t.prompts, lambda rows, v=v, s=scale: v.interventions(s), 8)
            row[f"rate@{scale}"] = sum(map(B.refused, texts)) / len(texts)
            row[f"kl@{scale}"] = side_effects(model, v.interventions(scale))[0]
        methods["sae (L12)"] = row
        print("sae", row, flush=True)
    results["methods"] = methods
    results["seconds"] = time.time() - start
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"done in {results['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
