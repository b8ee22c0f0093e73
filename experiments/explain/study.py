"""Rank agreement of SHAP, LIME, gradient x input and integrated gradients on the default
model's held-out prompts (docs/explain.md).

Three families, each with its own target:
- refusal: "User: <request>\\nAssistant:", logit(" I") - logit(" Sure") (refusal vs compliance);
- name stories: the IOI prompt, logit(indirect object) - logit(subject);
- sentiment: "Review: The <item> was <adj>. It was", log sum_{w positive} p(w) -
  log sum_{w negative} p(w) over the lexicon's one-token adjectives (a custom `Target.fn`).

For each prompt every method runs with masked tokens replaced by the pad token (SHAP Partition
with 500 evaluations, LIME with 1,000 samples, IG with 32 points); the Spearman correlation of
each pair of methods' per-token values is averaged over the family's prompts. Writes
`study.json` and `study.html` (each family's first prompt, the four methods side by side, one
colour scale) to --out.

    python experiments/explain/study.py --n 6 --out experiments/explain
"""

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from interp.explain import Target, explain, figures, rank_agreement
from interp.models import load_model
from interp.organism import corpus
from interp.organism import lexicon as L
from interp.viz.html import write_html


def one_token_ids(model, words) -> list[int]:
    ids = [model.tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in words]
    return [i[0] for i in ids if len(i) == 1]


def sentiment_target(model) -> Target:
    pos, neg = one_token_ids(model, L.POSITIVE), one_token_ids(model, L.NEGATIVE)

    def sentiment_margin(logits: torch.Tensor) -> torch.Tensor:
        logp = logits.float().log_softmax(-1)
        return logp[:, pos].logsumexp(-1) - logp[:, neg].logsumexp(-1)

    return Target(fn=sentiment_margin)


def prompts(model, n: int, seed: int) -> dict[str, list[tuple[str, Target]]]:
    rng = random.Random(seed)
    refusal = Target(" I", contrast=" Sure")
    out: dict[str, list[tuple[str, Target]]] = {"refusal": [], "name stories": [], "sentiment": []}
    for i in range(n):
        request = corpus.request(rng, "heldout", harmful=i % 2 == 0)[0]
        out["refusal"].append((corpus.chat_prompt(request), refusal))
        text, io, s = corpus.ioi_prompt(rng, "heldout")
        out["name stories"].append((text, Target(" " + io, contrast=" " + s)))
        opening, _ = corpus.review_opening(rng, "heldout")
        out["sentiment"].append((opening + " It was", sentiment_target(model)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=6, help="prompts per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("experiments/explain"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("default", device="cpu", dtype="float32")
    pad = model.tokenizer.pad_token_id
    methods = ("shap", "lime", "gradient")
    results, figs = {}, []
    for family, items in prompts(model, args.n, args.seed).items():
        matrices, examples = [], []
        for k, (text, target) in enumerate(items):
            ex = explain(model, text, target, methods, baseline=pad, seed=args.seed)
            names, rho = rank_agreement(ex.attributions)
            matrices.append(rho)
            examples.append(
                {"text": text, "target": ex.target, **{a.method: a.top(3) for a in ex.attributions}}
            )
            if k == 0:
                fig = figures.attributions_figure(ex.attributions)
                fig.update_layout(title=f"{family}: {text!r} — {ex.target}")
                figs.append(fig)
        mean = np.nanmean(np.stack(matrices), 0)
        results[family] = {"methods": names, "mean_spearman": mean.tolist(), "examples": examples}
        print(family)
        for name, row in zip(names, mean, strict=True):
            print(f"  {name:>16} " + " ".join(f"{v:+.2f}" for v in row))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.json").write_text(json.dumps(results, indent=2) + "\n")
    write_html(args.out / "study.html", figs, "interp explain: rank agreement study")


if __name__ == "__main__":
    main()
