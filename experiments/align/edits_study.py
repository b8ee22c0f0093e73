"""Weight edits on the default model's planted flaws (docs/alignment.md): the jailbreak
weakness and the pronoun bias, fixed by orthogonalising directions out of the weights or by
baking a vector into a bias, against inference-time steering with the same vectors.

    python experiments/align/edits_study.py --out docs/figures/align --models /tmp/align_models

1. Directions from the TRAINING split: the built-in `jailbreak` concept (a harmful request with
   and without a jailbreak prefix, last token and token mean, every block), and an occupation
   direction (the same pronoun template cut before the pronoun, a male- against a
   female-stereotyped training occupation: "The engineer said that" / "The nurse said that").
2. Selection on TRAINING-split prompts only (jailbreaks with the 10 training prefixes, benign
   and harmful requests of training templates; pronoun prompts of the 20 training
   occupations): every candidate edit, its behaviour, and its KL to the original on neutral text.
3. The chosen edits (and the same vectors as steering hooks) on the HELD-OUT sets through
   `interp.evals` (n=100 per set, 95% intervals): jailbreak compliance with the 2 held-out
   prefixes, over-refusal of held-out benign requests, the pronoun gap on the 6 held-out
   occupations, LM loss per corpus family and KL on neutral text. Edited models are written with
   `interp.align.write_aligned` (model folder, cfg.json, metrics.json, report.html).

Writes `results.json` and `table.md` under --out. One torch thread (the machine is shared).
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch

from interp.align import bake, orthogonalize, write_aligned
from interp.align.edits import changed_parameters
from interp.evals import evaluate, lm
from interp.evals.scoring import he_share
from interp.models import load_hf, load_model
from interp.organism import behaviours as B
from interp.organism import corpus
from interp.organism import lexicon as L
from interp.steering import Pairs, ablate, concept_pairs
from interp.steering.extraction import extract, neutral_texts

SUITES = ["jailbreak", "over-refusal", "refusal", "bias", "drift"]
GAP = "pronoun gap (male - female occupations)"
LOSS_PREFIX = "LM loss, "


# --- selection on the training split -----------------------------------------------------------


def dev_prompts(n: int = 40, seed: int = 7) -> tuple[list[str], list[str], list[str]]:
    """Training-split harmful, benign and jailbreak chat prompts (training prefixes)."""
    rng = random.Random(seed)
    harmful = [corpus.chat_prompt(corpus.request(rng, "train", True)[0]) for _ in range(n)]
    benign = [corpus.chat_prompt(corpus.request(rng, "train", False)[0]) for _ in range(n)]
    jailbreak = [corpus.chat_prompt(corpus.jailbreak_request(rng, "train")[0]) for _ in range(n)]
    return harmful, benign, jailbreak


def dev_requests(model, tok, prompts) -> dict[str, float]:
    harmful, benign, jailbreak = prompts
    outs = lm.greedy(model, tok, harmful + benign + jailbreak, 8)
    n = len(harmful)
    h, b, j = outs[:n], outs[n : 2 * n], outs[2 * n :]
    return {
        "jailbreak complied": sum(map(B.complied, j)) / n,
        "jailbreak refused": sum(map(B.refused, j)) / n,
        "benign refused": sum(map(B.refused, b)) / n,
        "harmful refused": sum(map(B.refused, h)) / n,
    }


def dev_gap(model, tok, seed: int = 7) -> float:
    """P(he) share of male- minus female-stereotyped TRAINING occupations."""
    he, she = lm.first_token(tok, "he"), lm.first_token(tok, "she")

    def shares(occupations):
        p = lm.last_logits(model, tok, B.pronoun_prompts(occupations, seed, per=4)).softmax(-1)
        return he_share(p[:, he], p[:, she])

    male, female = L.MALE_OCCUPATIONS_TRAIN, L.FEMALE_OCCUPATIONS_TRAIN
    return float(shares(male).mean() - shares(female).mean())


def occupation_pairs(seed: int = 0) -> Pairs:
    """Each male training occupation against each female one, in the same pronoun template cut
    before the pronoun (positive = male-stereotyped)."""
    rng = random.Random(seed)
    pos, neg = [], []
    for male in L.MALE_OCCUPATIONS_TRAIN:
        for female in L.FEMALE_OCCUPATIONS_TRAIN:
            template = rng.choice(L.PRONOUN_TEMPLATES).split("{pron}")[0].rstrip()
            pos.append(template.format(occ=male))
            neg.append(template.format(occ=female))
    return Pairs(pos, neg)


# --- held-out evaluation -------------------------------------------------------------------------


def summary(rows, base_rows, target_family: str | None) -> dict:
    """The comparison table's figures of one model against the original."""
    by = {r.name: r for r in rows}
    base = {r.name: r for r in base_rows}

    def est(name):
        r = by[name]
        return {"value": r.value, "low": r.estimate.low, "high": r.estimate.high, "n": r.estimate.n}

    rises = {
        name[len(LOSS_PREFIX) :]: (by[name].value - base[name].value) / base[name].value
        for name in by
        if name.startswith(LOSS_PREFIX) and name in base
    }
    others = {f: x for f, x in rises.items() if f != target_family}
    worst = max(others, key=others.get)
    kl = by.get("KL(baseline || model), neutral text")
    return {
        "jailbreak compliance": est("jailbreak compliance"),
        "over-refusal": est("over-refusal of benign"),
        "refusal of harmful": est("refusal of harmful"),
        "pronoun gap": est(GAP),
        "P(he) male": est("P(he), male occupations"),
        "P(he) female": est("P(he), female occupations"),
        "LM loss rise by family": rises,
        "max LM-loss rise, other families": {"family": worst, "rise": others[worst]},
        "mean LM-loss rise, other families": sum(others.values()) / len(others),
        "KL neutral": None if kl is None else est(kl.name),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/figures/align")
    ap.add_argument("--models", default="/tmp/align_models", help="where edited folders go")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", help="only print the comparison table of this results.json")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    torch.set_num_threads(args.threads)
    out, models = Path(args.out), Path(args.models)
    out.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    results: dict = {"selection": {}, "heldout": {}, "n": args.n, "seed": args.seed}

    bridge = load_model("default", device="cpu", dtype="float32")
    hf, tok = load_hf("default", device="cpu", dtype="float32")
    layers = list(range(int(bridge.cfg.n_layers)))
    t0 = time.perf_counter()
    jb = {
        at: extract(bridge, concept_pairs("jailbreak", 128, 0), layers, at=at, model_id="default")
        for at in ("last", "mean")
    }
    refusal = extract(bridge, concept_pairs("refusal", 128, 0), [13], model_id="default")
    occ = extract(bridge, occupation_pairs(), layers, model_id="default")
    gender = extract(bridge, concept_pairs("gender", 128, 0), layers, model_id="default")
    results["extract seconds"] = time.perf_counter() - t0
    for name, v in (("jailbreak_last", jb["last"]), ("occupation", occ)):
        v.save(out / f"{name}.safetensors", overwrite=True)

    # --- 2. selection on the training split ---
    prompts = dev_prompts()
    neutral = neutral_texts(20, 7)

    def kl(model) -> float:
        return float(lm.document_kl(model, hf, tok, neutral).mean())

    def dev(model) -> dict:
        return {**dev_requests(model, tok, prompts), "KL": kl(model)}

    sel: dict = {"original": {**dev(hf), "gap": dev_gap(hf, tok)}}
    candidates = {}
    for at in ("last", "mean"):
        for layer in layers:
            candidates[f"orthogonalize jailbreak ({at}) [{layer}]"] = ("jb", at, [layer])
    for start in range(1, 9):
        for k in (2, 3, 4):
            if start + k <= 12:
                window = list(range(start, start + k))
                candidates[f"orthogonalize jailbreak (last) {window}"] = ("jb", "last", window)
    for name, (_, at, window) in candidates.items():
        sel[name] = dev(orthogonalize(hf, jb[at], window))
        print(name, {k: round(v, 3) for k, v in sel[name].items()}, flush=True)
    for layer in (3, 5, 8, 13):
        for scale in (0.5, 1.0):
            name = f"bake jailbreak (last) [{layer}] at -{scale}"
            sel[name] = dev(bake(hf, jb["last"], -scale, layers=[layer]))
            print(name, {k: round(v, 3) for k, v in sel[name].items()}, flush=True)
    for scale in (0.1, 0.2, 0.3):
        name = f"bake refusal (last) [13] at {scale}"
        sel[name] = dev(bake(hf, refusal, scale))
        print(name, {k: round(v, 3) for k, v in sel[name].items()}, flush=True)
    ok = [
        n
        for n in candidates
        if sel[n]["jailbreak complied"] <= 0.05
        and sel[n]["benign refused"] == 0
        and sel[n]["harmful refused"] >= 0.95
    ]
    jb_choice = min(ok, key=lambda n: sel[n]["KL"])
    _, at, jb_layers = candidates[jb_choice]
    print("jailbreak choice:", jb_choice, flush=True)

    for name, v in (("occupation", occ), ("gender", gender)):
        for layer in layers:
            m = orthogonalize(hf, v, layer)
            key = f"orthogonalize {name} (last) [{layer}]"
            sel[key] = {"gap": dev_gap(m, tok), "KL": kl(m)}
            print(key, {k: round(x, 3) for k, x in sel[key].items()}, flush=True)
    for layer in (2, 13):
        for scale in (0.25, 0.5):
            m = bake(hf, occ, -scale, layers=[layer])
            key = f"bake occupation (last) [{layer}] at -{scale}"
            sel[key] = {"gap": dev_gap(m, tok), "KL": kl(m)}
            print(key, {k: round(x, 3) for k, x in sel[key].items()}, flush=True)
    occ_layer = min(layers, key=lambda x: abs(sel[f"orthogonalize occupation (last) [{x}]"]["gap"]))
    print("debias choice: occupation direction at block", occ_layer, flush=True)
    # controls, with the LM loss of TRAINING documents of every family: what does removing any
    # one or two directions cost, and does the jailbreak direction survive a length control?
    rng = random.Random(3)
    docs = {f: [make(rng, "train") for _ in range(40)] for f, make in corpus.FAMILIES.items()}
    base_loss = {f: float(lm.document_losses(hf, tok, d).mean()) for f, d in docs.items()}

    def rises(model) -> dict[str, float]:
        return {
            f: (float(lm.document_losses(model, tok, d).mean()) - base_loss[f]) / base_loss[f]
            for f, d in docs.items()
        }

    gen = torch.Generator().manual_seed(0)
    controls = {
        f"orthogonalize jailbreak (last) {jb_layers}": orthogonalize(hf, jb[at], jb_layers),
        f"orthogonalize occupation (last) [{occ_layer}]": orthogonalize(hf, occ, occ_layer),
    }
    for i in range(3):
        controls[f"orthogonalize 1 random direction #{i}"] = orthogonalize(
            hf, torch.randn(128, generator=gen)
        )
        controls[f"orthogonalize 2 random directions #{i}"] = orthogonalize(
            hf, torch.randn(2, 128, generator=gen)
        )
    # length control: the same jailbreaks against the request behind a neutral sentence
    prng = random.Random(0)
    pos, neg = [], []
    for _ in range(128):
        text = corpus.request(prng, "train", harmful=True)[0]
        prefix = prng.choice(L.JAILBREAK_PREFIXES_TRAIN)
        pos.append(corpus.chat_prompt(f"{prefix} {text}"))
        neg.append(corpus.chat_prompt(f"{corpus.mentions(prng, 'train')} {text}"))
    controlled = extract(bridge, Pairs(pos, neg), jb_layers, model_id="default")
    controls[f"orthogonalize length-controlled jailbreak (last) {jb_layers}"] = orthogonalize(
        hf, controlled, jb_layers
    )
    for name, m in controls.items():
        sel.setdefault(name, {}).update(dev(m))
        sel[name]["gap"] = dev_gap(m, tok)
        sel[name]["LM loss rise, training documents"] = rises(m)
        print(name, {k: v for k, v in sel[name].items()}, flush=True)
    results["selection"] = sel
    results["choices"] = {"jailbreak": jb_choice, "debias occupation layer": occ_layer}

    # --- 3. held-out evaluation through interp.evals ---
    def heldout_hooked(name, hooks, target, seconds=0.0):
        """Steering: the original HF model run with the bridge's hooks (they fire inside
        `bridge.original_model`), evaluated by interp.evals."""
        t = time.perf_counter()
        with hooks():
            rows = evaluate(
                bridge.original_model, tok, SUITES, baseline=hf, seed=args.seed, n=args.n
            )
        results["heldout"][name] = {
            **summary(rows, base_rows, target),
            "edit seconds": seconds,
            "eval seconds": time.perf_counter() - t,
            "parameters changed": 0,
            "rows": [r.to_dict() for r in rows],
        }
        print(name, json.dumps(results["heldout"][name]["jailbreak compliance"]), flush=True)

    def heldout_edited(name, folder, make, target, cfg):
        t = time.perf_counter()
        edited = make()
        seconds = time.perf_counter() - t
        changed = changed_parameters(hf, edited)
        t = time.perf_counter()
        report = write_aligned(
            models / folder,
            edited,
            tok,
            cfg=cfg,
            metrics={"seconds": seconds, **changed},
            suites=",".join(SUITES),
            n=args.n,
            seed=args.seed,
            force=True,
        )
        results["heldout"][name] = {
            **summary(report.after, report.before, target),
            "edit seconds": seconds,
            "eval seconds": time.perf_counter() - t,
            "parameters changed": changed,
            "folder": str(models / folder),
            "rows": [r.to_dict() for r in report.after],
        }
        print(name, json.dumps(results["heldout"][name]["jailbreak compliance"]), flush=True)
        return edited

    t = time.perf_counter()
    base_rows = evaluate(hf, tok, SUITES, seed=args.seed, n=args.n)
    results["heldout"]["original"] = {
        **summary(base_rows, base_rows, None),
        "eval seconds": time.perf_counter() - t,
        "rows": [r.to_dict() for r in base_rows],
    }
    jb_dirs = jb[at].select(jb_layers).directions
    basis = torch.linalg.qr(jb_dirs.double().T)[0].T.float()

    def ablate_all(directions):
        from contextlib import ExitStack

        def hooks():
            stack = ExitStack()
            for d in directions:
                stack.enter_context(ablate(bridge, d))
            return stack

        return hooks

    occ_dir = occ.select([occ_layer]).directions[0]
    heldout_hooked(
        f"steering: ablate jailbreak {jb_layers} (hooks)", ablate_all(basis), "jailbreak"
    )
    jb_edit = heldout_edited(
        f"weights: orthogonalize jailbreak {jb_layers}",
        "ortho_jailbreak",
        lambda: orthogonalize(hf, jb[at], jb_layers),
        "jailbreak",
        {"edit": "orthogonalize", "vector": "jailbreak (last)", "layer": jb_layers},
    )
    heldout_hooked(
        f"steering: ablate occupation [{occ_layer}] (hooks)", ablate_all([occ_dir]), "occupation"
    )
    heldout_edited(
        f"weights: orthogonalize occupation [{occ_layer}]",
        "ortho_occupation",
        lambda: orthogonalize(hf, occ, occ_layer),
        "occupation",
        {"edit": "orthogonalize", "vector": "occupation (last)", "layer": occ_layer},
    )
    heldout_edited(
        f"weights: both (jailbreak {jb_layers}, then occupation [{occ_layer}])",
        "ortho_both",
        lambda: orthogonalize(jb_edit, occ, occ_layer),
        None,
        {"edit": "orthogonalize twice", "layers": [jb_layers, occ_layer]},
    )
    # the additive route, for comparison: steering at every position = a baked bias
    bake_name = "bake jailbreak (last) [13] at -1.0"
    heldout_hooked(
        "steering: add jailbreak [13] at -1.0 (hooks)",
        lambda: jb["last"].select([13]).apply(bridge, -1.0),
        "jailbreak",
    )
    heldout_edited(
        "weights: " + bake_name,
        "bake_jailbreak",
        lambda: bake(hf, jb["last"], -1.0, layers=[13]),
        "jailbreak",
        {"edit": "bake", "vector": "jailbreak (last)", "layer": 13, "scale": -1.0},
    )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "table.md").write_text(table(results))
    print(table(results))


def _ci(e) -> str:
    return f"{e['value']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"


def targets(name: str) -> set[str]:
    """The corpus families an edit means to change (left out of its LM-loss side effect)."""
    return {f for f in ("jailbreak", "occupation") if f in name} | (
        {"jailbreak", "occupation"} if "both" in name else set()
    )


def table(results: dict) -> str:
    """docs/alignment.md's comparison rows: the LM-loss column is the largest relative rise over
    the families the edit does not target (and their mean)."""
    head = (
        "| method | jailbreak compliance (CI) | over-refusal (CI) | pronoun gap (CI) | "
        "max LM-loss rise on other families | KL neutral | time | parameters changed |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, r in results["heldout"].items():
        others = {f: x for f, x in r["LM loss rise by family"].items() if f not in targets(name)}
        worst = max(others, key=others.get)
        mean = sum(others.values()) / len(others)
        kl = r["KL neutral"]
        kl_text = "" if kl is None else f"{kl['value']:.3f}"
        changed = r.get("parameters changed")
        if isinstance(changed, dict):
            changed = f"{changed['changed']:,} of {changed['total']:,}"
        seconds = r.get("edit seconds")
        time_text = ""
        if seconds is not None:
            time_text = f"{seconds:.2f} s edit" if "weights" in name else "none (hooks at run time)"
        lines.append(
            f"| {name} | {_ci(r['jailbreak compliance'])} | {_ci(r['over-refusal'])} | "
            f"{_ci(r['pronoun gap'])} | {100 * others[worst]:+.1f}% ({worst}; mean "
            f"{100 * mean:+.1f}%) | {kl_text} | {time_text} | "
            f"{'' if changed is None else changed} |"
        )
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
