"""DPO, BiPO and the reward probe on the default model (docs/alignment.md, "## DPO", "## BiPO",
"## Reward model (probe)").

    python experiments/align/dpo_study.py --out /tmp/align_study

1. Vectors: refusal (block 13, last token) and gender (block 10, towards "he"), extracted from
   the TRAINING concept sets as `interp steer extract` does.
2. Jailbreak fix by DPO: pairs on 128 TRAINING jailbreak prompts (chosen = the answer with the
   refusal vector added to the prompt at scale 1 = the refusal; rejected = the unsteered
   compliance) and 64 benign anchors (chosen = unsteered answer); full fine-tuning and LoRA;
   and, for the anchors' effect, the same without anchors.
3. Debias by DPO: pairs on TRAINING occupations' pronoun prompts (chosen = the pronoun the gender
   vector gives at scale 1, added for female- and subtracted for male-stereotyped occupations,
   i.e. the counter-stereotype; rejected = the unsteered one: 40 pairs each way), trained
   until the TRAINING occupations' pronoun gap has shrunk by 90% (measured every step).
4. BiPO vectors on the same pairs (jailbreak: with and without anchors), evaluated baked into the weights (= steering at scale 1).
5. The reward probe (Bradley-Terry, block 13 / block 10 last token) on 75% of each pair set,
   pairwise accuracy on the other 25%.

Every model is measured with `interp.evals` on the held-out prompts (n=100, seed 0, 95% CIs);
results go to <out>/results.json.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from interp.align import preference_pairs, train_bipo, train_dpo, train_reward_probe
from interp.align.edits import bake
from interp.align.pairs import prompt_set
from interp.align.train_config import BiPOSettings, DPOSettings
from interp.evals import evaluate
from interp.evals.lm import last_logits
from interp.models import load_hf, load_model
from interp.organism import lexicon as L
from interp.organism.behaviours import pronoun_prompts
from interp.steering import SteeringVector

SUITES = ["jailbreak", "over-refusal", "refusal", "bias", "drift"]
OTHER_FAMILIES = ("names", "repeat", "review", "occupation", "prose", "mentions")


def rows_dict(rows) -> dict:
    return {
        r.name: {
            "value": r.value,
            "low": r.estimate.low,
            "high": r.estimate.high,
            "n": r.estimate.n,
        }
        for r in rows
    }


def measure(model, tok, base: dict | None) -> dict:
    rows = rows_dict(evaluate(model, tok, SUITES, n=100, seed=0))
    if base is not None:
        rows["drift"] = {
            f: rows[f"LM loss, {f}"]["value"] / base[f"LM loss, {f}"]["value"] - 1
            for f in OTHER_FAMILIES
        }
    return rows


def summary(name: str, r: dict) -> str:
    get = lambda k: r[k]["value"]  # noqa: E731
    drift = max(r["drift"].values()) if "drift" in r else 0.0
    return (
        f"{name:28s} jailbreak {get('jailbreak compliance'):.3f}  over-refusal "
        f"{get('over-refusal of benign'):.3f}  refusal {get('refusal of harmful'):.3f}  gap "
        f"{get('pronoun gap (male - female occupations)'):.3f}  max drift {100 * drift:+.2f}%"
    )


def training_gap(model, tok) -> float:
    """Pronoun gap P(he|male occ) - P(he|female occ) on TRAINING occupations (the stop rule)."""
    he, she = (tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in ("he", "she"))

    def share(occs) -> float:
        logits = last_logits(model, tok, pronoun_prompts(occs, seed=7, per=4))
        p = logits.float().softmax(-1)
        return float((p[:, he] / (p[:, he] + p[:, she])).mean())

    return share(L.MALE_OCCUPATIONS_TRAIN) - share(L.FEMALE_OCCUPATIONS_TRAIN)


def dpo_run(pairs, cfg: DPOSettings, base: dict, stop=None) -> dict:
    model, tok = load_hf("default", device="cpu", dtype="float32")
    t0 = time.perf_counter()
    result = train_dpo(model, tok, pairs, cfg, stop=stop)
    seconds = time.perf_counter() - t0
    out = measure(result.model, tok, base)
    out["train"] = {
        "seconds": seconds,
        "steps": result.steps,
        "trainable": result.trainable,
        "changed": result.changed,
        "final": result.history[-1],
    }
    return out


def bipo_run(bridge, pairs, layer: int, base: dict, steps: int) -> dict:
    cfg = BiPOSettings(layer=layer, steps=steps)
    result = train_bipo(bridge, pairs, cfg, model_id="default")
    model, tok = load_hf("default", device="cpu", dtype="float32")
    out = measure(bake(model, result.vector, 1.0, model_id="default"), tok, base)
    out["train"] = {
        "seconds": result.seconds,
        "steps": steps,
        "norm": result.history[-1]["norm"],
        "trainable": int(result.vector.d_model),
    }
    return out, result.vector


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/align_study")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    bridge = load_model("default", device="cpu", dtype="float32")
    refusal = SteeringVector.from_concept(bridge, "refusal", [13], model_id="default")
    gender = SteeringVector.from_concept(bridge, "gender", [10], model_id="default")

    hf, tok = load_hf("default", device="cpu", dtype="float32")
    base = measure(hf, tok, None)
    results["default"] = base
    print(summary("default", base), flush=True)

    jail, benign = prompt_set("jailbreak", 128), prompt_set("benign", 64)
    t0 = time.perf_counter()
    jpairs = preference_pairs(bridge, refusal, jail.prompts, 1.0, anchors=benign.prompts)
    results["jailbreak_pairs"] = {"counts": jpairs.counts(), "seconds": time.perf_counter() - t0}
    jpairs.save(out / "jailbreak_pairs.jsonl", overwrite=True)
    runs = {
        "dpo jailbreak (full)": (jpairs, DPOSettings()),
        "dpo jailbreak (LoRA r8)": (jpairs, DPOSettings(lora=True, lr=3e-4, steps=15)),
        "dpo jailbreak, no anchors": (
            jpairs.subset([i for i, k in enumerate(jpairs.kinds) if k == "target"]),
            DPOSettings(),
        ),
    }
    for name, (pairs, cfg) in runs.items():
        results[name] = dpo_run(pairs, cfg, base)
        print(summary(name, results[name]), results[name]["train"]["seconds"], flush=True)

    gset = prompt_set("gender", 128)
    gpairs = preference_pairs(bridge, gender, gset.prompts, 1.0, signs=gset.signs, max_new_tokens=1)
    results["gender_pairs"] = {"counts": gpairs.counts(), "examples": gpairs.rows()[:4]}
    gpairs.save(out / "gender_pairs.jsonl", overwrite=True)
    start_gap = training_gap(hf, tok)
    gaps = []

    def until(step, model) -> bool:
        model.eval()
        gaps.append(training_gap(model, tok))
        model.train()
        return gaps[-1] <= 0.1 * start_gap

    cfg = DPOSettings(steps=120, lr=2e-5)  # lr 5e-5: gap -83% but prose LM loss +2.25%
    results["dpo debias (full)"] = dpo_run(gpairs, cfg, base, stop=until)
    results["dpo debias (full)"]["training_gaps"] = [start_gap, *gaps]
    print(summary("dpo debias (full)", results["dpo debias (full)"]), gaps[-3:], flush=True)

    targets = jpairs.subset([i for i, k in enumerate(jpairs.kinds) if k == "target"])
    bipos = (
        ("bipo jailbreak", jpairs, 13),
        ("bipo jailbreak, no anchors", targets, 13),
        ("bipo debias", gpairs, 10),
    )
    for name, pairs, layer in bipos:
        results[name], vector = bipo_run(bridge, pairs, layer, base, steps=150)
        vector.save(out / f"{name.replace(' ', '_').replace(',', '')}.safetensors", overwrite=True)
        print(summary(name, results[name]), results[name]["train"], flush=True)

    for name, pairs, layer in (("jailbreak", jpairs, 13), ("gender", gpairs, 10)):
        train, held = pairs.split(0.25, seed=0)
        probe = train_reward_probe(bridge, train, layer, heldout=held)
        results[f"reward probe {name}"] = probe.info
        print(f"reward probe {name}: {probe.info}", flush=True)

    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
