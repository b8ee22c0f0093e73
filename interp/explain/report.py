"""Every explainer on one text and target, as one value: the attributions, their rank agreement,
and (for "attention") the text's per-head entropy and patterns and the head classification."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from interp.explain.attention import HeadReport, attention_patterns, entropy, head_report
from interp.explain.attribution import Attribution
from interp.explain.errors import ExplainError
from interp.explain.gradients import explain_gradient, explain_ig
from interp.explain.lime_local import DEFAULT_SAMPLES, explain_lime
from interp.explain.shapley import explain_shap
from interp.explain.target import Target, prepare

Method = Literal["shap", "lime", "attention", "gradient", "all"]
METHODS: tuple[str, ...] = ("shap", "lime", "attention", "gradient", "all")


@dataclass(frozen=True)
class Explanation:
    """What `explain` returns. `patterns` is [layer, head, query, key] on the text (BOS
    included, `pattern_tokens` its tokens), `entropy` [layer, head] on the text."""

    text: str
    target: str
    attributions: list[Attribution]
    heads: HeadReport | None = None
    entropy: torch.Tensor | None = None
    patterns: torch.Tensor | None = None
    pattern_tokens: list[str] = field(default_factory=list)

    def agreement(self) -> tuple[list[str], np.ndarray]:
        """(methods, Spearman rank correlations [m, m]) of the attributions' values."""
        return rank_agreement(self.attributions)

    def figures(self) -> list[Any]:
        """The attributions as token-coloured text, then the attention figures."""
        from interp.explain import figures

        out = [figures.attributions_figure(self.attributions)] if self.attributions else []
        if self.entropy is not None:
            out.append(figures.entropy_figure(self.entropy, "Attention entropy on this text"))
        if self.heads is not None:
            out.append(figures.scores_figure(self.heads.scores))
            for layer, head in _shown_heads(self.heads):
                out.append(
                    figures.pattern_figure(
                        self.patterns[layer, head], self.pattern_tokens, layer, head
                    )
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        names, rho = self.agreement()
        return {
            "text": self.text,
            "target": self.target,
            "attributions": [a.to_dict() for a in self.attributions],
            "rank_agreement": {"methods": names, "spearman": rho.tolist()},
            "heads": None if self.heads is None else self.heads.to_dict(),
            "entropy": None if self.entropy is None else self.entropy.tolist(),
        }


def _shown_heads(heads: HeadReport) -> list[tuple[int, int]]:
    """The first head of each non-empty class except sinks (what the pattern viewer shows)."""
    seen = []
    for name in ("previous_token", "induction", "duplicate_token"):
        for head in heads.classes.get(name, [])[:1]:
            if head not in seen:
                seen.append(head)
    return seen


def rank_agreement(attributions: Sequence[Attribution]) -> tuple[list[str], np.ndarray]:
    """(methods, Spearman rho [m, m]) between the methods' per-token values (NaN where a method's
    values are constant)."""
    from scipy.stats import spearmanr

    names = [a.method for a in attributions]
    m = len(attributions)
    rho = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            r = spearmanr(attributions[i].values, attributions[j].values).statistic
            rho[i, j] = rho[j, i] = float(r)
    return names, rho


def explain(
    model: Any,
    text: str,
    target: Target,
    methods: Sequence[str] = ("all",),
    baseline: int | None = None,
    shap_method: Literal["partition", "permutation"] = "partition",
    max_evals: int = 500,
    num_samples: int = DEFAULT_SAMPLES,
    ig_steps: int = 32,
    batch_size: int = 128,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> Explanation:
    """Run the chosen methods (`METHODS`; "gradient" is gradient x input and IG, "all" is every
    method) on `text` for `target`. `progress(done, total, name)` is called after each step."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ExplainError(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    chosen = set(METHODS[:-1]) if "all" in methods else set(methods)
    prepared = prepare(model, text, target)  # checks the input once, before any work
    steps: list[tuple[str, Callable[[], Any]]] = []
    if "shap" in chosen:
        steps.append(
            (
                "shap",
                lambda: explain_shap(
                    model, text, target, shap_method, baseline, max_evals, batch_size, seed
                ),
            )
        )
    if "lime" in chosen:
        steps.append(
            (
                "lime",
                lambda: explain_lime(model, text, target, baseline, num_samples, batch_size, seed),
            )
        )
    if "gradient" in chosen:
        steps.append(("gradient", lambda: explain_gradient(model, text, target)))
        steps.append(("ig", lambda: explain_ig(model, text, target, baseline, ig_steps)))
    if "attention" in chosen:
        steps.append(("attention", lambda: _attention(model, prepared.full)))
    results: dict[str, Any] = {}
    for done, (name, step) in enumerate(steps, start=1):
        results[name] = step()
        if progress is not None:
            progress(done, len(steps), name)
    attention = results.pop("attention", None)
    attrs = list(results.values())
    if attention is None:
        return Explanation(text, target.describe(), attrs)
    heads, ent, patterns = attention
    tokens = [model.tokenizer.decode([int(i)]) for i in prepared.full[0]]
    return Explanation(text, target.describe(), attrs, heads, ent, patterns, tokens)


def _attention(model: Any, tokens: torch.Tensor) -> tuple[HeadReport, torch.Tensor, torch.Tensor]:
    patterns = attention_patterns(model, tokens)  # [layer, 1, head, q, k]
    if tokens.shape[1] < 2:
        raise ExplainError("attention entropy needs a text of at least 2 tokens")
    return head_report(model), entropy(patterns)[:, 0], patterns[:, 0]
