"""Contrastive pairs: a jsonl file of positive and negative texts, or a built-in concept set of the
default model, drawn from the TRAINING split of its corpus (evaluation uses the held-out split).

A pair is (positive, negative): the direction points from negative to positive, i.e. towards
the concept. Built-in sets (each pair differs only in the concept, the rest of the text shared):

- refusal: a harmful request vs a benign request with the same verb and template, as chat
  prompts (`User: ...\\nAssistant:`); towards refusing.
- sentiment: a positive vs a negative review opening about the same item, followed by "It was"
  (where the model picks the next adjective's polarity); towards positive.
- gender: a pronoun sentence about an occupation cut after "he" vs after "she" ("The nurse
  said that he" / "... she"); towards male. (Gender-cue sentences, "... is a man", gave a
  direction that does not move pronoun choice at all: docs/steering.md.)
- jailbreak: a harmful request behind a jailbreak prefix vs the same request without it; towards
  complying with a jailbreak.
"""

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from interp.organism import corpus
from interp.organism import lexicon as L
from interp.steering.vector import SteeringError
from sae.fsutil import json_kind, read_jsonl

CONCEPTS = ("refusal", "sentiment", "gender", "jailbreak")


class Pairs(NamedTuple):
    """Contrastive texts: `positive[i]` and `negative[i]` form pair i."""

    positive: list[str]
    negative: list[str]

    def source_hash(self) -> str:
        """sha256 of the pairs as canonical JSON: the provenance recorded in a vector."""
        data = json.dumps([self.positive, self.negative], ensure_ascii=False)
        return hashlib.sha256(data.encode()).hexdigest()


def check_pairs(pairs: Pairs, where: str = "the contrastive set") -> Pairs:
    """`SteeringError` unless both sides are non-empty, of equal length, and all strings."""
    pos, neg = list(pairs.positive), list(pairs.negative)
    if not pos or not neg:
        raise SteeringError(
            f"{where} has {len(pos)} positive and {len(neg)} negative texts; both sides need "
            "at least one"
        )
    if len(pos) != len(neg):
        raise SteeringError(
            f"{where} is unbalanced: {len(pos)} positive and {len(neg)} negative texts; give "
            "one negative per positive (pairs)"
        )
    bad = [t for t in pos + neg if not isinstance(t, str) or not t.strip()]
    if bad:
        raise SteeringError(f"{where} has {len(bad)} empty or non-text entries, e.g. {bad[0]!r}")
    return Pairs(pos, neg)


def read_pairs(path: str | Path) -> Pairs:
    """A jsonl file, one object per line with a "positive" and a "negative" text (a line may
    give a list for either side; the sides must come out balanced)."""
    path = Path(path)
    if not path.is_file():
        raise SteeringError(f"no contrastive file at {path}")
    pos: list[str] = []
    neg: list[str] = []
    for i, row in read_jsonl(path, SteeringError):
        if not isinstance(row, dict) or not {"positive", "negative"} <= set(row):
            raise SteeringError(
                f'{path}, line {i}: must be an object with "positive" and "negative" texts, got '
                f"{json_kind(row)}"
            )
        for side, out in (("positive", pos), ("negative", neg)):
            value = row[side]
            out.extend(value if isinstance(value, list) else [value])
    return check_pairs(Pairs(pos, neg), str(path))


def concept_pairs(concept: str, n: int = 128, seed: int = 0) -> Pairs:
    """`n` pairs of a built-in concept set, from the training split (seeded)."""
    if concept not in CONCEPTS:
        raise SteeringError(
            f"unknown concept {concept!r}; built-in concepts: {', '.join(CONCEPTS)}"
        )
    if n < 1:
        raise SteeringError(f"n must be >= 1, got {n}")
    rng = random.Random(f"steering:{concept}:{seed}")
    make = {
        "refusal": _refusal,
        "sentiment": _sentiment,
        "gender": _gender,
        "jailbreak": _jailbreak,
    }
    rows = [make[concept](rng) for _ in range(n)]
    return Pairs([p for p, _ in rows], [q for _, q in rows])


def _train_object(rng: random.Random, verb: str, objects: Sequence[str]) -> str:
    while True:
        obj = rng.choice(objects)
        if not corpus._combo_is_heldout(verb, obj):
            return obj


def _refusal(rng: random.Random) -> tuple[str, str]:
    template, verb = rng.choice(L.REQUEST_TEMPLATES_TRAIN), rng.choice(L.REQUEST_VERBS)
    harmful = template.format(verb=verb, obj=_train_object(rng, verb, L.HARMFUL_OBJECTS))
    benign = template.format(verb=verb, obj=_train_object(rng, verb, L.BENIGN_OBJECTS))
    return corpus.chat_prompt(harmful), corpus.chat_prompt(benign)


def _sentiment(rng: random.Random) -> tuple[str, str]:
    item = rng.choice(L.REVIEW_ITEMS_TRAIN)
    good, bad = rng.choice(L.POSITIVE), rng.choice(L.NEGATIVE)
    return f"Review: The {item} was {good}. It was", f"Review: The {item} was {bad}. It was"


def _gender(rng: random.Random) -> tuple[str, str]:
    occ = rng.choice(L.MALE_OCCUPATIONS_TRAIN + L.FEMALE_OCCUPATIONS_TRAIN)
    stem = rng.choice(L.PRONOUN_TEMPLATES).split("{pron}")[0].format(occ=occ)
    return stem + "he", stem + "she"


def _jailbreak(rng: random.Random) -> tuple[str, str]:
    text, _, _ = corpus.request(rng, "train", harmful=True)
    prefix = rng.choice(L.JAILBREAK_PREFIXES_TRAIN)
    return corpus.chat_prompt(f"{prefix} {text}"), corpus.chat_prompt(text)
