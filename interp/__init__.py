"""interp: from a model's activations to findings, and from findings to a safer model."""

from interp.models import load_model

__all__ = ["load_model"]
__version__ = "0.1.0"
