"""The explainers' user errors."""

from interp.errors import InterpError


class ExplainError(InterpError):
    """Input an explainer cannot take: empty text, a target that is not one token, text longer
    than the model's context, an unknown method or baseline."""
