"""Explainers on the model's own tokens: SHAP, LIME, gradient x input, IG, attention entropy and head classes.

Names load on first use (`interp.lazy`), so `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS: dict[str, str] = {}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
