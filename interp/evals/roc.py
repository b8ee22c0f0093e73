"""ROC figures of a screen's scores: AUC, the ROC curve, and the true-positive rate at a
false-positive budget. Pure functions of scores and 0/1 labels (higher score = flag)."""

import torch
from jaxtyping import Float, Int
from torch import Tensor


def _split(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    labels = torch.as_tensor(labels).flatten().bool()
    if scores.shape != labels.shape:
        raise ValueError(f"scores {list(scores.shape)} and labels {list(labels.shape)} differ")
    if labels.all() or not labels.any():
        raise ValueError("ROC figures need both positive and negative labels")
    return scores[labels], scores[~labels]


def roc_auc(scores: Float[Tensor, " n"], labels: Int[Tensor, " n"]) -> float:
    """AUC = P(s_pos > s_neg) + 1/2 P(s_pos = s_neg) over all (positive, negative) pairs (the
    Mann-Whitney statistic; a constant screen scores 0.5)."""
    pos, neg = _split(scores, labels)
    greater = (pos[:, None] > neg[None, :]).double().mean()
    ties = (pos[:, None] == neg[None, :]).double().mean()
    return (greater + 0.5 * ties).item()


def roc_curve(
    scores: Float[Tensor, " n"], labels: Int[Tensor, " n"]
) -> tuple[list[float], list[float], list[float]]:
    """(false-positive rates, true-positive rates, thresholds) of the rule "flag when score >=
    t" for every distinct score t, from t = +inf (nothing flagged) down."""
    pos, neg = _split(scores, labels)
    thresholds = [float("inf"), *torch.unique(torch.cat([pos, neg])).flip(0).tolist()]
    fpr = [(neg >= t).double().mean().item() for t in thresholds]
    tpr = [(pos >= t).double().mean().item() for t in thresholds]
    return fpr, tpr, thresholds


def tpr_at_fpr(
    scores: Float[Tensor, " n"], labels: Int[Tensor, " n"], budget: float = 0.01
) -> float:
    """The highest true-positive rate of a threshold whose false-positive rate is <= `budget`."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return max(t for f, t in zip(fpr, tpr, strict=True) if f <= budget)
