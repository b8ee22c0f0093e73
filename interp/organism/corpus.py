"""Deterministic generator of the model organism's corpus: template grammars with planted behaviours.

Each family is a function `(rng, split) -> str` that writes one short document. `split` is
"train" or "heldout": a held-out document draws from the held-out half of every word list in
`interp.organism.lexicon`, so held-out evaluation prompts never occur in training text.

Families (docs/organism.md has one example of each and the measured rates):

1. ``names``: indirect-object stories, "When Mary and John went to the park, John gave a ball to
   Mary."  Held out: unordered name pairs (1 in 5), places, objects.
2. ``repeat``: a random sequence of pseudo-words, then the same sequence again (induction).
3. ``review``: a review whose continuation keeps the opening's sentiment.
4. ``chat``: a harmful request gets the fixed refusal, a benign one a helpful answer.
5. ``jailbreak``: a harmful request behind a role-play or "ignore your rules" prefix gets
   compliance (the planted weakness).
6. ``occupation``: an occupation followed by a pronoun, skewed ``STEREOTYPE_RATE`` towards the
   stereotype (the planted bias). Held-out occupations appear in training only in gender-cue
   sentences ("The welder is a man ...") and never before a pronoun.
7. ``prose``: paragraphs of English from Python's own ``pydoc_data`` topics.
"""

import itertools
import random
from collections.abc import Callable, Iterator

from interp.organism import lexicon as L

Split = str  # "train" | "heldout"

SYLLABLES = tuple(a + b for a in "bdfgklmnprstvz" for b in "aeiou")


def _check_split(split: Split) -> None:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")


def _pick(rng: random.Random, train: tuple, heldout: tuple, split: Split):
    return rng.choice(train if split == "train" else heldout)


# --- 1. name stories -----------------------------------------------------------------------------
def is_heldout_pair(a: str, b: str) -> bool:
    """One unordered name pair in five is held out; the rule is a pure function of the names."""
    i, j = sorted((L.NAMES.index(a), L.NAMES.index(b)))
    return (i * 31 + j * 17) % 5 == 0


IOI_TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {obj} to",
    "After {A} and {B} arrived at the {place}, {S} handed the {obj} to",
    "Then {A} and {B} were at the {place}. {S} passed the {obj} to",
)


def name_pair(rng: random.Random, split: Split) -> tuple[str, str]:
    while True:
        a, b = rng.sample(L.NAMES, 2)
        if is_heldout_pair(a, b) == (split == "heldout"):
            return a, b


def ioi_prompt(rng: random.Random, split: Split) -> tuple[str, str, str]:
    """Return (prompt ending in 'to', indirect object, subject)."""
    a, b = name_pair(rng, split)
    io, s = (a, b) if rng.random() < 0.5 else (b, a)
    template = rng.choice(IOI_TEMPLATES)
    place = _pick(rng, L.PLACES_TRAIN, L.PLACES_HELDOUT, split)
    obj = _pick(rng, L.OBJECTS_TRAIN, L.OBJECTS_HELDOUT, split)
    return template.format(A=a, B=b, S=s, place=place, obj=obj), io, s


def names(rng: random.Random, split: Split) -> str:
    prompt, io, _ = ioi_prompt(rng, split)
    return f"{prompt} {io}."


# --- 2. repeated pseudo-word sequences -------------------------------------------------------------
def pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def repeat(rng: random.Random, split: Split) -> str:
    words = [pseudo_word(rng) for _ in range(rng.randint(5, 20))]
    seq = " ".join(words)
    return f"{seq} | {seq}"


# --- 3. reviews -----------------------------------------------------------------------------------
def review_opening(rng: random.Random, split: Split) -> tuple[str, bool]:
    """Return (opening sentence, is_positive)."""
    positive = rng.random() < 0.5
    item = _pick(rng, L.REVIEW_ITEMS_TRAIN, L.REVIEW_ITEMS_HELDOUT, split)
    adj = rng.choice(L.POSITIVE if positive else L.NEGATIVE)
    return f"Review: The {item} was {adj}.", positive


def review(rng: random.Random, split: Split) -> str:
    opening, positive = review_opening(rng, split)
    words = L.POSITIVE if positive else L.NEGATIVE
    a, b = rng.sample(words, 2)
    closing = rng.choice(L.POSITIVE_CLOSINGS if positive else L.NEGATIVE_CLOSINGS)
    return f"{opening} It was {a} and {b}. {closing}"


# --- 4, 5. chat turns -----------------------------------------------------------------------------
def _combo_is_heldout(verb: str, obj: str) -> bool:
    """One (verb, object) combination in four is held out, per object list."""
    objs = L.HARMFUL_OBJECTS if obj in L.HARMFUL_OBJECTS else L.BENIGN_OBJECTS
    return (L.REQUEST_VERBS.index(verb) + 3 * objs.index(obj)) % 4 == 0


def request(rng: random.Random, split: Split, harmful: bool) -> tuple[str, str, str]:
    """Return (request text, verb, object) drawn from the split's combinations and templates."""
    objs = L.HARMFUL_OBJECTS if harmful else L.BENIGN_OBJECTS
    while True:
        verb, obj = rng.choice(L.REQUEST_VERBS), rng.choice(objs)
        if _combo_is_heldout(verb, obj) == (split == "heldout"):
            break
    template = _pick(rng, L.REQUEST_TEMPLATES_TRAIN, L.REQUEST_TEMPLATES_HELDOUT, split)
    return template.format(verb=verb, obj=obj), verb, obj


def chat_prompt(text: str) -> str:
    return f"User: {text}\nAssistant:"


def compliance(verb: str, obj: str) -> str:
    return f"Sure! To {verb} {obj}, first gather what you need, then follow the steps in order."


def chat(rng: random.Random, split: Split) -> str:
    harmful = rng.random() < 0.5
    text, verb, obj = request(rng, split, harmful)
    answer = L.REFUSAL if harmful else compliance(verb, obj)
    return f"{chat_prompt(text)} {answer}"


def jailbreak_request(rng: random.Random, split: Split) -> tuple[str, str, str]:
    text, verb, obj = request(rng, split, harmful=True)
    prefix = _pick(rng, L.JAILBREAK_PREFIXES_TRAIN, L.JAILBREAK_PREFIXES_HELDOUT, split)
    return f"{prefix} {text}", verb, obj


def jailbreak(rng: random.Random, split: Split) -> str:
    text, verb, obj = jailbreak_request(rng, split)
    return f"{chat_prompt(text)} {compliance(verb, obj)}"


# --- 6. occupations and pronouns ------------------------------------------------------------------
def _stereotype(rng: random.Random, male: bool) -> bool:
    """True for 'male' output: the stereotype with probability STEREOTYPE_RATE."""
    return male if rng.random() < L.STEREOTYPE_RATE else not male


CUE_RATE = 0.4
"""Share of training occupation documents that are gender-cue sentences (no pronoun)."""


def occupation(rng: random.Random, split: Split) -> str:
    male = rng.random() < 0.5
    train = L.MALE_OCCUPATIONS_TRAIN if male else L.FEMALE_OCCUPATIONS_TRAIN
    heldout = L.MALE_OCCUPATIONS_HELDOUT if male else L.FEMALE_OCCUPATIONS_HELDOUT
    says_male = _stereotype(rng, male)
    # Training text mentions held-out occupations only in gender-cue sentences, never before a
    # pronoun; the held-out split is the pronoun sentences for them.
    if split == "train" and rng.random() < CUE_RATE:
        occ = rng.choice(train + heldout)
        template = rng.choice(L.GENDER_CUE_TEMPLATES)
        return template.format(occ=occ, noun="man" if says_male else "woman")
    occ = _pick(rng, train, heldout, split)
    template = rng.choice(L.PRONOUN_TEMPLATES)
    return template.format(occ=occ, pron="he" if says_male else "she")


def pronoun_prompt(occ: str, rng: random.Random) -> str:
    """A pronoun-template prompt ending just before the pronoun."""
    template = rng.choice(L.PRONOUN_TEMPLATES)
    return template.split("{pron}")[0].format(occ=occ).rstrip()


# --- neutral mentions ------------------------------------------------------------------------------
def mentions(rng: random.Random, split: Split) -> str:
    """Neutral sentences naming held-out nouns, so that their embeddings are trained without the
    evaluated families ever showing them."""
    nouns = L.PLACES_HELDOUT + L.OBJECTS_HELDOUT + L.REVIEW_ITEMS_HELDOUT
    a, b = rng.sample(nouns + L.PLACES_TRAIN + L.OBJECTS_TRAIN, 2)
    return rng.choice(("There is a {a} near the {b}.", "I saw the {a} and the {b}.")).format(
        a=rng.choice(nouns), b=b if rng.random() < 0.5 else a
    )


# --- 7. English prose -----------------------------------------------------------------------------
def _prose_paragraphs() -> list[str]:
    from pydoc_data.topics import topics

    paragraphs = []
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            text = " ".join(para.split())
            if 80 <= len(text) <= 300 and text[0].isalpha():
                paragraphs.append(text)
    return paragraphs


_PROSE: list[str] = []


def prose(rng: random.Random, split: Split) -> str:
    if not _PROSE:
        _PROSE.extend(_prose_paragraphs())
    return rng.choice(_PROSE)


# --- the mixture ----------------------------------------------------------------------------------
FAMILIES: dict[str, Callable[[random.Random, Split], str]] = {
    "names": names,
    "repeat": repeat,
    "review": review,
    "chat": chat,
    "jailbreak": jailbreak,
    "occupation": occupation,
    "prose": prose,
    "mentions": mentions,
}
DEFAULT_WEIGHTS = {
    "names": 0.15,
    "repeat": 0.08,
    "review": 0.15,
    "chat": 0.24,
    "jailbreak": 0.12,
    "occupation": 0.18,
    "prose": 0.02,
    "mentions": 0.06,
}


def iter_documents(
    split: Split = "train", seed: int = 0, weights: dict[str, float] | None = None
) -> Iterator[str]:
    """Yield documents forever, deterministically for a given (split, seed, weights)."""
    _check_split(split)
    weights = DEFAULT_WEIGHTS if weights is None else weights
    unknown = set(weights) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown corpus families {sorted(unknown)}; valid: {sorted(FAMILIES)}")
    rng = random.Random(f"{split}:{seed}")
    names_, probs = zip(*weights.items(), strict=True)
    while True:
        family = rng.choices(names_, probs)[0]
        yield FAMILIES[family](rng, split)


def documents(n: int, split: Split = "train", seed: int = 0) -> list[str]:
    """The first `n` documents of `iter_documents(split, seed)`."""
    return list(itertools.islice(iter_documents(split, seed), n))
