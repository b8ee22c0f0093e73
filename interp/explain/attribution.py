"""One token attribution, as every method returns it."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Attribution:
    """Per-token values of one method for one text and target.

    `values[j]` is token j's contribution to the target (`target`, in its own units: nats for
    log-probabilities, logits otherwise). `base_value` is the target with every token masked
    (the SHAP base value, IG's baseline; LIME's intercept) and `value` the target on the full text,
    so for SHAP and IG sum(values) = value - base_value. `evaluations` counts the model
    evaluations (rows) the method asked for; `extra` holds method-specific numbers (LIME's
    local fit score R^2, IG's steps).
    """

    method: str
    tokens: list[str]
    token_ids: list[int]
    values: np.ndarray
    base_value: float
    value: float
    target: str
    evaluations: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The k tokens with the largest |value|: (position, token, value)."""
        order = np.argsort(-np.abs(self.values), kind="stable")[:k]
        return [(int(j), self.tokens[j], float(self.values[j])) for j in order]

    def figure(self, vmax: float | None = None) -> Any:
        """Token-coloured text (`interp.explain.figures.attributions_figure`)."""
        from interp.explain.figures import attributions_figure

        return attributions_figure([self], vmax=vmax)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target": self.target,
            "tokens": list(self.tokens),
            "token_ids": list(self.token_ids),
            "values": [float(v) for v in self.values],
            "base_value": float(self.base_value),
            "value": float(self.value),
            "evaluations": int(self.evaluations),
            "seconds": float(self.seconds),
            "extra": dict(self.extra),
        }
