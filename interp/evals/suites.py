"""The built-in evaluation suites: each is a named set of held-out prompts and a scoring rule,
returning rows of figures with their n and 95% interval.

The prompts are the default model's held-out sets (`interp.organism.behaviours`), so the
suites measure its planted behaviours on any model folder; rows that carry a target in
`behaviours.TARGETS` are docs/organism.md's table (`interp organism eval`).

| suite | rows | interval |
|---|---|---|
| induction | top-1 accuracy on the 2nd copy of 100 random sequences of 32 tokens | bootstrap over sequences |
| names | logit(indirect object) > logit(subject) on 200 held-out name stories | Wilson |
| refusal | greedy answer to 100 harmful requests begins with the refusal | Wilson |
| over-refusal | the same on 100 benign requests | Wilson |
| jailbreak | greedy answer to 100 jailbreaks begins "Sure"; per attack category | Wilson |
| sentiment | 10 greedy tokens after 100 review openings keep their polarity | Wilson |
| bias | P(he)/(P(he)+P(she)) per occupation group and their gap; a gendered word swapped | bootstrap, Wilson |
| drift | LM loss per corpus family; KL(baseline || model) on neutral text | bootstrap |
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from interp.evals import lm
from interp.evals.scoring import he_share, swap_gendered, total_variation
from interp.evals.stats import Estimate, bootstrap_diff, bootstrap_mean, rate
from interp.organism import behaviours as B
from interp.organism import corpus
from interp.organism import lexicon as L


@dataclass(frozen=True)
class Row:
    """One figure of a suite: what was measured (`name`), its estimate with n and 95% interval,
    its unit, and for the default model's planted behaviours the target and whether it is met."""

    suite: str
    name: str
    estimate: Estimate
    unit: str = "rate"
    target: str | None = None
    passed: bool | None = None
    note: str = ""

    @property
    def value(self) -> float:
        return self.estimate.value

    def to_dict(self) -> dict[str, Any]:
        est = self.estimate.to_dict()
        return {"suite": self.suite, "name": self.name, **est} | {
            "unit": self.unit,
            "target": self.target,
            "passed": self.passed,
            "note": self.note,
        }


@dataclass
class Subject:
    """What a suite runs on: a HuggingFace causal LM and its tokenizer, the seed of the prompt
    draws, prompts per set (`n`, 100 as in the model card), and for drift the baseline model
    (sharing the tokenizer) with `compare_tokens` False when its tokenizer differs."""

    model: Any
    tokenizer: Any
    seed: int = 0
    n: int = 100
    baseline: Any = None
    compare_tokens: bool = True


def _row(suite: str, name: str, est: Estimate, unit: str = "rate", note: str = "") -> Row:
    if name in B.TARGETS:
        op, bound = B.TARGETS[name]
        return Row(suite, name, est, unit, f"{op} {bound:.2f}", B.meets(name, est.value), note)
    return Row(suite, name, est, unit, note=note)


def induction(s: Subject) -> list[Row]:
    """Top-1 accuracy on the second copy of random sequences repeated twice (the first copy,
    in the note, is at chance); positions 2..length of each copy count."""
    length = 32
    tokens = B.induction_tokens(len(s.tokenizer), s.tokenizer.bos_token_id, 100, length, s.seed)
    with torch.inference_mode():
        pred = s.model(input_ids=tokens.to(s.model.device)).logits.argmax(-1)[:, :-1].cpu()
    correct = (pred == tokens[:, 1:]).float()
    # correct[:, j] scores the prediction of token j+1; copy 1 holds tokens 1..length.
    first = correct[:, 1:length].mean().item()
    second = bootstrap_mean(correct[:, length + 1 :].mean(1), seed=s.seed)
    return [
        _row("induction", "induction, 2nd copy top-1", second, "top-1", f"1st copy {first:.3f}")
    ]


def names(s: Subject) -> list[Row]:
    """logit(indirect object) > logit(subject) at the end of held-out name stories."""
    items = B.ioi_items(2 * s.n, s.seed)
    logits = lm.last_logits(s.model, s.tokenizer, [p for p, _, _ in items])
    io = torch.tensor([lm.first_token(s.tokenizer, x) for _, x, _ in items])
    subj = torch.tensor([lm.first_token(s.tokenizer, x) for _, _, x in items])
    rows = torch.arange(len(items))
    est = rate(logits[rows, io] > logits[rows, subj])
    return [_row("names", "name stories, IO > S", est, note="held-out pairs")]


def _answers(s: Subject, prompts: list[str]) -> list[str]:
    return lm.greedy(s.model, s.tokenizer, prompts, max_new_tokens=8)


def refusal(s: Subject) -> list[Row]:
    """Greedy answers to held-out harmful requests that begin with the refusal."""
    outs = _answers(s, B.requests(s.n, s.seed).harmful)
    return [
        _row("refusal", "refusal of harmful", rate([B.refused(o) for o in outs]), note="greedy")
    ]


def over_refusal(s: Subject) -> list[Row]:
    """Greedy answers to held-out benign requests that begin with the refusal."""
    outs = _answers(s, B.requests(s.n, s.seed).benign)
    est = rate([B.refused(o) for o in outs])
    return [_row("over-refusal", "over-refusal of benign", est, note="greedy")]


def jailbreak(s: Subject) -> list[Row]:
    """Greedy answers to held-out jailbreaks (held-out prefixes) that comply, overall and by
    attack category."""
    prompts = B.requests(s.n, s.seed).jailbreak
    hits = [B.complied(o) for o in _answers(s, prompts)]
    rows = [_row("jailbreak", "jailbreak compliance", rate(hits), note="planted weakness")]
    categories = [B.jailbreak_category(p) for p in prompts]
    for cat in sorted(set(categories)):
        mine = [h for h, c in zip(hits, categories, strict=True) if c == cat]
        rows.append(_row("jailbreak", f"jailbreak compliance: {cat}", rate(mine), note="greedy"))
    return rows


def sentiment(s: Subject) -> list[Row]:
    """10 greedy tokens after a held-out review opening keep its polarity (lexicon judge)."""
    items = B.review_items(s.n, s.seed)
    outs = lm.greedy(s.model, s.tokenizer, [o for o, _ in items], max_new_tokens=10)
    hits = [B.sentiment_match(o, pos) for o, (_, pos) in zip(outs, items, strict=True)]
    return [_row("sentiment", "sentiment kept", rate(hits), note="lexicon")]


def _he_shares(s: Subject, occupations: tuple[str, ...]) -> torch.Tensor:
    probs = lm.last_logits(s.model, s.tokenizer, B.pronoun_prompts(occupations, s.seed)).softmax(-1)
    he, she = lm.first_token(s.tokenizer, "he"), lm.first_token(s.tokenizer, "she")
    return he_share(probs[:, he], probs[:, she])


def bias(s: Subject) -> list[Row]:
    """Winogender-style pronoun shares on held-out occupations and their gap; and how much the
    answer moves when only the gendered word of a prompt is swapped."""
    male = _he_shares(s, L.MALE_OCCUPATIONS_HELDOUT)
    female = _he_shares(s, L.FEMALE_OCCUPATIONS_HELDOUT)
    note = "held-out occupations"
    rows = [
        _row(
            "bias",
            "P(he), male occupations",
            bootstrap_mean(male, seed=s.seed),
            "probability",
            note,
        ),
        _row(
            "bias",
            "P(he), female occupations",
            bootstrap_mean(female, seed=s.seed),
            "probability",
            note,
        ),
        _row(
            "bias",
            "pronoun gap (male - female occupations)",
            bootstrap_diff(male, female, seed=s.seed),
            "probability",
            note,
        ),
    ]
    return rows + swap_rows(s, "bias", B.swap_prompts(s.n // 2, s.seed))


def swap_rows(
    s: Subject, suite: str, prompts: list[str], swapped: list[str] | None = None
) -> list[Row]:
    """Counterfactual pairs (each prompt and its gendered-word swap): the share whose greedy
    answers differ, and the mean total variation between their next-token distributions."""
    other = swapped if swapped is not None else [swap_gendered(p)[0] for p in prompts]
    outs = _answers(s, prompts + other)
    changed = [
        a.strip() != b.strip()
        for a, b in zip(outs[: len(prompts)], outs[len(prompts) :], strict=True)
    ]
    logits = lm.last_logits(s.model, s.tokenizer, prompts + other)
    tv = total_variation(logits[: len(prompts)], logits[len(prompts) :])
    return [
        _row(suite, "answer changed by gender swap", rate(changed), note="greedy, 8 tokens"),
        _row(
            suite,
            "next-token TV distance, gender swap",
            bootstrap_mean(tv, seed=s.seed),
            "TV",
            "0 = unchanged",
        ),
    ]


def drift(s: Subject) -> list[Row]:
    """LM loss (nats/token) on held-out documents of each corpus family; with a baseline that
    shares the tokenizer, the mean next-token KL(baseline || model) on neutral text."""
    rows = []
    n_docs = max(4, s.n // 5)
    for family in corpus.FAMILIES:
        docs = B.family_documents(family, n_docs, s.seed)
        loss = lm.document_losses(s.model, s.tokenizer, docs)
        rows.append(
            _row("drift", f"LM loss, {family}", bootstrap_mean(loss, seed=s.seed), "nats/token")
        )
    if s.baseline is not None and s.compare_tokens:
        from interp.steering.extraction import neutral_texts

        kl = lm.document_kl(s.model, s.baseline, s.tokenizer, neutral_texts(2 * n_docs, s.seed))
        est = bootstrap_mean(kl, seed=s.seed)
        rows.append(_row("drift", "KL(baseline || model), neutral text", est, "nats/token"))
    return rows


SUITES: dict[str, Callable[[Subject], list[Row]]] = {
    "induction": induction,
    "names": names,
    "refusal": refusal,
    "over-refusal": over_refusal,
    "jailbreak": jailbreak,
    "sentiment": sentiment,
    "bias": bias,
    "drift": drift,
}
"""Every built-in suite by name, in the order of the report."""
ORGANISM = ("induction", "names", "refusal", "over-refusal", "jailbreak", "sentiment", "bias")
"""The suites whose target rows make up docs/organism.md's table."""
