"""Prompt pairs for `--task`, drawn from the default model's held-out sets
(`interp.organism.corpus`), each with the metric its behaviour is read by.

| task        | clean                                   | corrupt                                  | metric |
|-------------|-----------------------------------------|------------------------------------------|--------|
| `names`     | held-out name story, "..., S gave a book to" | the same with S replaced by IO (the answer flips) | logit(IO) - logit(S) |
| `induction` | BOS + random tokens A + A               | BOS + other random tokens B + A          | CE on A's second copy |
| `refusal`   | a held-out harmful request (chat prompt) | the same with a benign object of one token length | logit(' I') - logit(' Sure') |

Every pair in a batch has one token length: candidates are drawn and the largest group of one
length is kept.
"""

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from interp.patching.inputs import PatchingError, single_token
from interp.patching.metric import Metric, ce_metric, logit_diff_metric

TaskName = Literal["names", "induction", "refusal"]
TASKS = ("names", "induction", "refusal")


@dataclass(frozen=True, eq=False)
class Task:
    """Prompt pairs of one token length and their metric."""

    name: str
    clean: Tensor
    corrupt: Tensor
    metric: Metric
    description: str


def _same_length(model: Any, pairs: list[tuple[str, str, Any]], n: int, what: str):
    """The first n pairs of the most common token length (clean and corrupt equal)."""
    groups: dict[int, list] = defaultdict(list)
    for clean, corrupt, extra in pairs:
        a, b = model.to_tokens(clean)[0], model.to_tokens(corrupt)[0]
        if len(a) == len(b):
            groups[len(a)].append((a, b, extra))
    best = max(groups.values(), key=len, default=[])
    if len(best) < n:
        raise PatchingError(
            f"only {len(best)} {what} pairs of one token length among {len(pairs)} candidates; "
            f"ask for fewer pairs (--pairs {len(best)})"
        )
    return best[:n]


def _stack(rows: list, device: torch.device) -> tuple[Tensor, Tensor, list]:
    clean = torch.stack([a for a, _, _ in rows]).to(device)
    corrupt = torch.stack([b for _, b, _ in rows]).to(device)
    return clean, corrupt, [x for _, _, x in rows]


def names_task(model: Any, n: int = 8, seed: int = 0) -> Task:
    from interp.organism import corpus

    rng = random.Random(seed)
    pairs = []
    for _ in range(20 * n):
        prompt, io, s = corpus.ioi_prompt(rng, "heldout")
        i = prompt.rfind(f" {s} ")
        pairs.append((prompt, f"{prompt[:i]} {io} {prompt[i + len(s) + 2 :]}", (io, s)))
    rows = _same_length(model, pairs, n, "name-story")
    clean, corrupt, answers = _stack(rows, next(model.parameters()).device)
    io = torch.tensor([single_token(model, f" {a}") for a, _ in answers])
    s = torch.tensor([single_token(model, f" {b}") for _, b in answers])
    desc = "held-out name stories; corrupt: the second subject replaced by the indirect object"
    return Task("names", clean, corrupt, logit_diff_metric(io, s), desc)


def induction_pair(n: int = 8, length: int = 12, seed: int = 0, vocab: int = 2048, bos: int = 0):
    """(clean, corrupt, mask): BOS + A + A against BOS + B + A, A and B uniform over the
    non-special ids 3..vocab-1, and the mask [n, 2*length] of the predictions that count: the
    second copy's tokens 2..length (its first token cannot be predicted by induction)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(3, vocab, (n, length), generator=gen)
    b = torch.randint(3, vocab, (n, length), generator=gen)
    start = torch.full((n, 1), bos)
    mask = torch.zeros(n, 2 * length, dtype=torch.bool)
    mask[:, length + 1 :] = True
    return torch.cat([start, a, a], 1), torch.cat([start, b, a], 1), mask


def induction_task(model: Any, n: int = 8, seed: int = 0, length: int = 12) -> Task:
    bos = model.tokenizer.bos_token_id
    clean, corrupt, mask = induction_pair(n, length, seed, int(model.cfg.d_vocab), bos or 0)
    dev = next(model.parameters()).device
    desc = f"random tokens repeated: BOS + A + A against BOS + B + A ({length} tokens each)"
    return Task("induction", clean.to(dev), corrupt.to(dev), ce_metric(clean, mask), desc)


def refusal_task(model: Any, n: int = 8, seed: int = 0) -> Task:
    from interp.organism import corpus
    from interp.organism import lexicon as L

    rng = random.Random(seed)
    pairs = []
    for _ in range(20 * n):
        text, _, obj = corpus.request(rng, "heldout", harmful=True)
        benign = rng.choice(L.BENIGN_OBJECTS)
        pairs.append(
            (corpus.chat_prompt(text), corpus.chat_prompt(text.replace(obj, benign)), None)
        )
    rows = _same_length(model, pairs, n, "request")
    clean, corrupt, _ = _stack(rows, next(model.parameters()).device)
    metric = logit_diff_metric(single_token(model, " I"), single_token(model, " Sure"))
    desc = "held-out harmful requests; corrupt: a benign object of the same token length"
    return Task("refusal", clean, corrupt, metric, desc)


BUILDERS: dict[str, Callable[..., Task]] = {
    "names": names_task,
    "induction": induction_task,
    "refusal": refusal_task,
}


def make_task(model: Any, name: str, n: int = 8, seed: int = 0) -> Task:
    """The task's prompt pairs (n of them) and metric; `PatchingError` for an unknown name."""
    if name not in BUILDERS:
        raise PatchingError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return BUILDERS[name](model, n=n, seed=seed)
