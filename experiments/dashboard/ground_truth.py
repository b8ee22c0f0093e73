"""How many latents of an SAE on the default model do the automatic labels tie to each planted
behaviour, and how precise are those labels on held-out tokens?

    interp dashboard --sae runs/<run>/saes/blocks.12.hook_resid_post --tokens 300000 --out dash
    python experiments/dashboard/ground_truth.py dash

A planted behaviour is a set of token strings known from the corpus generator
(`interp.organism.lexicon`); for induction, the tokens that occur in the generator's repeated
pseudo-word documents and in none of its other families (2,000 documents each). A latent is tied to a behaviour
when the tokens of its label rule that belong to the behaviour (the token itself for `token` and
`bigram` rules, the token before for `after` rules) cover more than half of the rule's sampled
firings. The precision and recall are the
label's own, measured by `interp dashboard` on held-out tokens.
"""

import json
import statistics
import sys
from pathlib import Path

from interp.organism import lexicon as L

N_DOCS = 2000


def pseudo_word_tokens(tok) -> set[str]:
    """Tokens of repeated pseudo-word documents that no other document family uses."""
    import random

    from interp.organism import corpus

    rng = random.Random(0)
    others = (
        corpus.names,
        corpus.review,
        corpus.chat,
        corpus.jailbreak,
        corpus.occupation,
        corpus.mentions,
        corpus.prose,
    )

    def tokens(docs) -> set[int]:
        return {t for d in docs for t in tok(d, add_special_tokens=False)["input_ids"]}

    english = tokens(make(rng, "train") for make in others for _ in range(N_DOCS))
    pseudo = tokens(corpus.repeat(rng, "train") for _ in range(N_DOCS)) - english
    return {tok.decode([t]) for t in pseudo}


def _words(*groups) -> set[str]:
    return {w.split()[-1].lower() for g in groups for w in g}


BEHAVIOURS = {
    "name stories (names)": lambda t: t.strip() in set(L.NAMES),
    "sentiment words": lambda t: t.strip().lower() in _words(L.POSITIVE, L.NEGATIVE),
    "occupations / pronouns": lambda t: (
        t.strip().lower()
        in _words(
            L.MALE_OCCUPATIONS_TRAIN,
            L.MALE_OCCUPATIONS_HELDOUT,
            L.FEMALE_OCCUPATIONS_TRAIN,
            L.FEMALE_OCCUPATIONS_HELDOUT,
            ("he", "she", "him", "her", "his", "man", "woman"),
        )
    ),
    "refusal (harmful objects, refusal reply)": lambda t: (
        t.strip().lower() in _words(L.HARMFUL_OBJECTS, ("can", "'t", "help"))
    ),
}


def rule_tokens(label: dict, vocab_of: dict[int, str], vocab_size: int) -> list[str]:
    keys = label["keys"]
    if label["kind"] == "bigram":
        keys = [k % vocab_size for k in keys]
    return [vocab_of[k] for k in keys]


def main(folder: str) -> dict:
    from transformers import AutoTokenizer

    from interp.models import default_model_dir

    tok = AutoTokenizer.from_pretrained(default_model_dir())
    vocab = {i: tok.decode([i]) for i in range(len(tok))}
    pseudo = pseudo_word_tokens(tok)
    behaviours = {**BEHAVIOURS, "induction (repeated pseudo-words)": lambda t: t in pseudo}
    records = [json.loads(p.read_text()) for p in sorted(Path(folder, "features").glob("*.json"))]
    labelled = [r for r in records if r["label"]]
    out = {}
    for name, member in behaviours.items():
        tied = []
        for r in labelled:
            toks = rule_tokens(r["label"], vocab, len(vocab))
            shares = r["label"]["shares"]
            inside = sum(w for t, w in zip(toks, shares, strict=True) if member(t))
            if toks and inside > sum(shares) / 2:
                tied.append(r)
        best = max(tied, key=lambda r: r["label"]["score"], default=None)
        out[name] = {
            "features": len(tied),
            "median_precision": statistics.median([r["label"]["precision"] for r in tied])
            if tied
            else None,
            "median_recall": statistics.median([r["label"]["recall"] for r in tied])
            if tied
            else None,
            "best": None
            if best is None
            else {
                "index": best["index"],
                "label": best["label"]["text"],
                "precision": best["label"]["precision"],
                "recall": best["label"]["recall"],
            },
        }
    return {"labelled": len(labelled), "features": len(records), "behaviours": out}


def markdown(result: dict) -> str:
    lines = [
        "| behaviour | features tied | median precision | median recall | best feature (precision / recall) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, b in result["behaviours"].items():
        best = b["best"]
        cell = (
            "-"
            if best is None
            else f"#{best['index']} `{best['label']}` ({best['precision']} / {best['recall']})"
        )
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(
            f"| {name} | {b['features']} | {fmt(b['median_precision'])} | {fmt(b['median_recall'])} | {cell} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    res = main(sys.argv[1] if len(sys.argv) > 1 else "dash")
    print(json.dumps(res, indent=1))
    print(markdown(res))
