"""Preference pairs made from a steering vector: chosen = the steered greedy answer, rejected =
the unsteered (or anti-steered) one, on prompts of a concept set (TRAINING split of the default
model's corpus; evaluation uses the held-out split).

    pairs = preference_pairs(bridge, refusal, prompt_set("jailbreak").prompts, scale=1.0,
                             anchors=prompt_set("benign").prompts)
    pairs.save("pairs.jsonl"); PreferencePairs.load("pairs.jsonl")

Anchor pairs (benign prompts: chosen = the unsteered answer, rejected = the steered one) keep a
model trained on the pairs from doing the steered thing everywhere (refusing every request).
A pair whose two answers are the same token ids says nothing and is dropped; a set left with
no target pair is an `AlignError` with the counts.

The jsonl format, one pair a line, is TRL's preference format plus token ids:
`{"prompt", "chosen", "rejected", "kind", "prompt_ids", "chosen_ids", "rejected_ids"}`; the
ids may be left out (they are then made by `tokenized` with the tokenizer: BOS + prompt, and
each completion alone).
"""

import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from interp.align.errors import AlignError
from interp.organism import corpus
from interp.organism import lexicon as L
from sae.fsutil import read_jsonl

KINDS = ("target", "anchor")
"""A target pair prefers the steered answer; an anchor pair prefers the unsteered one."""


@dataclass(frozen=True)
class PreferencePairs:
    """Pair i: `prompts[i]` answered `chosen[i]` (preferred) and `rejected[i]`, with the token
    ids of each (prompt ids start with BOS; completion ids end with EOS when the answer
    stopped), and whether it is a target or an anchor pair."""

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    kinds: list[str] = field(default_factory=list)
    prompt_ids: list[list[int]] | None = None
    chosen_ids: list[list[int]] | None = None
    rejected_ids: list[list[int]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """How the pairs were made (vector, scale, prompt sets, counts)."""

    def __post_init__(self) -> None:
        n = len(self.prompts)
        kinds = list(self.kinds) or ["target"] * n
        object.__setattr__(self, "kinds", kinds)
        lengths = {len(self.chosen), len(self.rejected), len(kinds)}
        ids = (self.prompt_ids, self.chosen_ids, self.rejected_ids)
        if any(x is not None for x in ids):
            if any(x is None for x in ids):
                raise AlignError("preference pairs need all three token-id lists or none")
            lengths |= {len(x) for x in ids}  # type: ignore[arg-type]
        if lengths != {n}:
            raise AlignError(
                f"preference pairs of unequal lengths: {n} prompts, {len(self.chosen)} chosen, "
                f"{len(self.rejected)} rejected, {len(kinds)} kinds"
            )
        bad = sorted(set(kinds) - set(KINDS))
        if bad:
            raise AlignError(f"unknown pair kinds {bad}; valid: {', '.join(KINDS)}")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def has_ids(self) -> bool:
        return self.prompt_ids is not None

    def counts(self) -> dict[str, int]:
        """{"target": n, "anchor": m}."""
        return {k: self.kinds.count(k) for k in KINDS}

    def check(self) -> "PreferencePairs":
        """`AlignError` for a set that cannot train anything: no pairs, no target pair, or a pair
        whose chosen and rejected answers are the same (with the counts)."""
        n = len(self)
        same = [i for i in range(n) if self._same(i)]
        if n == 0 or self.counts()["target"] == 0 or same:
            raise AlignError(
                f"the preference set is empty or one-sided: {n} pairs, "
                f"{self.counts()['target']} target and {self.counts()['anchor']} anchor, "
                f"{len(same)} with chosen == rejected; every pair needs two different answers "
                "and at least one target pair (does the vector change the answers at this "
                "--scale?)"
            )
        return self

    def _same(self, i: int) -> bool:
        if self.has_ids:
            return self.chosen_ids[i] == self.rejected_ids[i]  # type: ignore[index]
        return self.chosen[i] == self.rejected[i]

    def subset(self, rows: Sequence[int]) -> "PreferencePairs":
        def pick(xs: list | None) -> list | None:
            return None if xs is None else [xs[i] for i in rows]

        return replace(
            self,
            prompts=pick(self.prompts),
            chosen=pick(self.chosen),
            rejected=pick(self.rejected),
            kinds=pick(self.kinds),
            prompt_ids=pick(self.prompt_ids),
            chosen_ids=pick(self.chosen_ids),
            rejected_ids=pick(self.rejected_ids),
        )

    def split(self, heldout: float, seed: int = 0) -> tuple["PreferencePairs", "PreferencePairs"]:
        """(train, held-out) by a seeded shuffle: a share `heldout` of each kind held out."""
        rng = random.Random(f"pairs:{seed}")
        train, test = [], []
        for kind in KINDS:
            rows = [i for i, k in enumerate(self.kinds) if k == kind]
            rng.shuffle(rows)
            cut = round(len(rows) * heldout)
            test += rows[:cut]
            train += rows[cut:]
        return self.subset(sorted(train)), self.subset(sorted(test))

    def tokenized(self, tokenizer: Any) -> "PreferencePairs":
        """The pairs with token ids (kept when present): BOS + prompt, each completion alone."""
        if self.has_ids:
            return self
        from interp.evals.lm import encode

        def bare(texts: list[str]) -> list[list[int]]:
            return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

        return replace(
            self,
            prompt_ids=encode(tokenizer, self.prompts),
            chosen_ids=bare(self.chosen),
            rejected_ids=bare(self.rejected),
        )

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i in range(len(self)):
            row = {
                "prompt": self.prompts[i],
                "chosen": self.chosen[i],
                "rejected": self.rejected[i],
                "kind": self.kinds[i],
            }
            if self.has_ids:
                row |= {
                    "prompt_ids": self.prompt_ids[i],  # type: ignore[index]
                    "chosen_ids": self.chosen_ids[i],  # type: ignore[index]
                    "rejected_ids": self.rejected_ids[i],  # type: ignore[index]
                }
            out.append(row)
        return out

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """One JSON object a line (atomically)."""
        from sae.fsutil import write_text_atomically

        path = Path(path)
        if path.exists() and not overwrite:
            raise AlignError(f"{path} already exists; pass --force to replace it")
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows())
        write_text_atomically(path, text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PreferencePairs":
        """Pairs from a jsonl file (`save`'s format, or TRL's prompt/chosen/rejected lines)."""
        path = Path(path)
        if not path.is_file():
            raise AlignError(f"no preference file at {path}")
        rows = []
        for i, row in read_jsonl(path, AlignError):
            need = {"prompt", "chosen", "rejected"}
            if not isinstance(row, dict) or not need <= set(row):
                raise AlignError(f'{path}, line {i}: needs "prompt", "chosen" and "rejected"')
            rows.append(row)
        with_ids = bool(rows) and all("prompt_ids" in r for r in rows)

        def col(key: str) -> list | None:
            return [r[key] for r in rows] if with_ids or not key.endswith("_ids") else None

        return cls(
            col("prompt"),
            col("chosen"),
            col("rejected"),
            [r.get("kind", "target") for r in rows],
            col("prompt_ids"),
            col("chosen_ids"),
            col("rejected_ids"),
        )

    def concat(self, other: "PreferencePairs") -> "PreferencePairs":
        if self.has_ids != other.has_ids:
            raise AlignError("cannot join pairs with token ids to pairs without")

        def join(a: list | None, b: list | None) -> list | None:
            return None if a is None or b is None else a + b

        return PreferencePairs(
            self.prompts + other.prompts,
            self.chosen + other.chosen,
            self.rejected + other.rejected,
            self.kinds + other.kinds,
            join(self.prompt_ids, other.prompt_ids),
            join(self.chosen_ids, other.chosen_ids),
            join(self.rejected_ids, other.rejected_ids),
            self.info | other.info,
        )


# --- prompt sets --------------------------------------------------------------------------------


class PromptSet(NamedTuple):
    """Prompts and, per prompt, the sign the vector is applied with to get the preferred answer
    (+1: add it; -1: subtract it, e.g. a towards-male gender vector on male occupations)."""

    prompts: list[str]
    signs: list[int]


def _chat(rng: random.Random, harmful: bool, prefix: bool) -> str:
    text = corpus.request(rng, "train", harmful=harmful)[0]
    if prefix:
        text = f"{rng.choice(L.JAILBREAK_PREFIXES_TRAIN)} {text}"
    return corpus.chat_prompt(text)


def _gender(rng: random.Random) -> tuple[str, int]:
    male = rng.random() < 0.5
    occ = rng.choice(L.MALE_OCCUPATIONS_TRAIN if male else L.FEMALE_OCCUPATIONS_TRAIN)
    return corpus.pronoun_prompt(occ, rng), -1 if male else 1


PROMPT_SETS: dict[str, Callable[[random.Random], tuple[str, int]]] = {
    "jailbreak": lambda rng: (_chat(rng, True, True), 1),
    "harmful": lambda rng: (_chat(rng, True, False), 1),
    "benign": lambda rng: (_chat(rng, False, False), 1),
    "jailbreak-benign": lambda rng: (_chat(rng, False, True), 1),
    "gender": _gender,
}
"""Built-in prompt sets of the default model, TRAINING split: chat prompts (harmful requests
behind a jailbreak prefix, plain harmful or benign requests, benign requests behind a prefix),
and pronoun prompts ("The nurse said that") of training occupations, signed +1 for
female-stereotyped occupations and -1 for male ones (a towards-male vector, added with that
sign, gives the counter-stereotype pronoun)."""


def prompt_set(name: str, n: int = 128, seed: int = 0) -> PromptSet:
    """`n` distinct prompts of a built-in set (`PROMPT_SETS`) or a jsonl file (one
    `{"prompt": text}` or `{"request": text}` a line, optional `"sign"`: 1 or -1)."""
    if name in PROMPT_SETS:
        rng = random.Random(f"align:{name}:{seed}")
        seen: dict[str, int] = {}
        for _ in range(50 * n):
            prompt, sign = PROMPT_SETS[name](rng)
            seen.setdefault(prompt, sign)
            if len(seen) == n:
                break
        return PromptSet(list(seen), list(seen.values()))
    path = Path(name)
    if not path.is_file():
        raise AlignError(
            f"unknown prompt set {name!r}; built-in: {', '.join(PROMPT_SETS)}, or a .jsonl file "
            'of {"prompt": ...} lines'
        )
    return _read_prompts(path)


def _read_prompts(path: Path) -> PromptSet:
    prompts, signs = [], []
    for i, row in read_jsonl(path, AlignError):
        text = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(row, dict) and text is None and isinstance(row.get("request"), str):
            text = corpus.chat_prompt(row["request"])
        sign = row.get("sign", 1) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip() or sign not in (1, -1):
            raise AlignError(
                f'{path}, line {i}: needs a non-empty "prompt" (or "request") and a "sign" of '
                "1 or -1 if any"
            )
        prompts.append(text)
        signs.append(sign)
    if not prompts:
        raise AlignError(f"{path} holds no prompts")
    return PromptSet(prompts, signs)


# --- pairs from a vector ------------------------------------------------------------------------


def _answers(
    model: Any,
    prompts: Sequence[str],
    hooks_for: Callable[[list[int]], Any],
    max_new_tokens: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, answer ids) of greedy generation, batched by prompt length; an answer ends
    with EOS when the model stopped (the padding after it is dropped)."""
    from interp.generation import generate

    groups: dict[int, list[int]] = defaultdict(list)
    ids = [model.to_tokens(p)[0].tolist() for p in prompts]
    for i, x in enumerate(ids):
        groups[len(x)].append(i)
    eos = model.tokenizer.eos_token_id
    answers: list[list[int]] = [[] for _ in prompts]
    for plen, rows in sorted(groups.items()):
        gen = generate(model, [prompts[i] for i in rows], hooks_for(rows), max_new_tokens)
        for j, i in enumerate(rows):
            new = gen.tokens[j, plen:].tolist()
            answers[i] = new[: new.index(eos) + 1] if eos in new else new
    return ids, answers


def _signed(vector: Any, scale: float, signs: Sequence[int], positions: Any) -> Callable:
    def hooks_for(rows: list[int]) -> Any:
        ivs = []
        for sign in (1, -1):
            mine = [j for j, i in enumerate(rows) if signs[i] == sign]
            if len(mine) == len(rows):
                return vector.interventions(scale * sign, positions)
            if mine:
                ivs += vector.interventions(scale * sign, positions, rows=mine)
        return ivs

    return hooks_for


def preference_pairs(
    model: Any,
    vector: Any,
    prompts: Sequence[str],
    scale: float,
    *,
    signs: Sequence[int] | None = None,
    rejected: str = "unsteered",
    anchors: Sequence[str] = (),
    positions: Any = "prompt",
    max_new_tokens: int = 8,
    model_id: str | None = None,
) -> PreferencePairs:
    """Pairs from greedy answers of `model` (a TransformerBridge) with and without `vector`.

    Target pairs (`prompts`): chosen = the answer with the vector added at `sign * scale`,
    rejected = the unsteered answer (`rejected="unsteered"`) or the one at `-sign * scale`
    (`"anti"`). Anchor pairs (`anchors`): chosen = unsteered, rejected = steered at `scale`.
    The vector acts at `positions` ("prompt": the prompt's tokens only, so the answer follows
    from the steered prompt without being pushed token by token; None: everywhere).
    Pairs whose answers are equal are dropped; `AlignError` when no target pair is left.
    """
    if rejected not in ("unsteered", "anti"):
        raise AlignError(f"rejected must be 'unsteered' or 'anti', got {rejected!r}")
    vector.check_model(model, model_id)
    signs = list(signs) if signs is not None else [1] * len(prompts)
    if len(signs) != len(prompts) or any(s not in (1, -1) for s in signs):
        raise AlignError(f"signs must be 1 or -1, one per prompt ({len(prompts)})")
    steered = _signed(vector, scale, signs, positions)
    other = _signed(vector, -scale, signs, positions) if rejected == "anti" else lambda r: ()
    pids, chosen = _answers(model, prompts, steered, max_new_tokens)
    _, worse = _answers(model, prompts, other, max_new_tokens)
    kinds = ["target"] * len(prompts)
    if anchors:
        plus = _signed(vector, scale, [1] * len(anchors), positions)
        apids, good = _answers(model, anchors, lambda r: (), max_new_tokens)
        _, bad = _answers(model, anchors, plus, max_new_tokens)
        pids, chosen, worse = pids + apids, chosen + good, worse + bad
        kinds += ["anchor"] * len(anchors)
    everything = list(prompts) + list(anchors)
    keep = [i for i in range(len(everything)) if chosen[i] != worse[i]]
    decode = model.tokenizer.decode
    info = {
        "vector": vector.metadata() | {"scale": scale},
        "rejected": rejected,
        "positions": str(positions),
        "max_new_tokens": max_new_tokens,
        "made": {"target": len(prompts), "anchor": len(anchors)},
    }
    pairs = PreferencePairs(
        [everything[i] for i in keep],
        [decode(chosen[i], skip_special_tokens=True) for i in keep],
        [decode(worse[i], skip_special_tokens=True) for i in keep],
        [kinds[i] for i in keep],
        [pids[i] for i in keep],
        [chosen[i] for i in keep],
        [worse[i] for i in keep],
        info,
    )
    if pairs.counts()["target"] == 0:
        raise AlignError(
            f"the preference set is one-sided: the vector changed none of the {len(prompts)} "
            f"answers at scale {scale} (every chosen == rejected; {len(keep)} anchor pairs "
            "kept); try a larger --scale or other --prompts"
        )
    return replace(pairs, info=info | {"kept": pairs.counts()})
