"""Explainers on the model's own tokens: SHAP, LIME, gradient x input, IG, attention entropy and head classes.

Names load on first use (`interp.lazy`), so `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Attribution": "interp.explain.attribution:Attribution",
    "ExplainError": "interp.explain.errors:ExplainError",
    "Explanation": "interp.explain.report:Explanation",
    "HeadReport": "interp.explain.attention:HeadReport",
    "Target": "interp.explain.target:Target",
    "attention_patterns": "interp.explain.attention:attention_patterns",
    "classify": "interp.explain.attention:classify",
    "entropy": "interp.explain.attention:entropy",
    "explain": "interp.explain.report:explain",
    "explain_gradient": "interp.explain.gradients:explain_gradient",
    "explain_ig": "interp.explain.gradients:explain_ig",
    "explain_lime": "interp.explain.lime_local:explain_lime",
    "explain_shap": "interp.explain.shapley:explain_shap",
    "figures": "interp.explain.figures",
    "head_hooks": "interp.explain.attention:head_hooks",
    "head_report": "interp.explain.attention:head_report",
    "induction_accuracy": "interp.explain.attention:induction_accuracy",
    "lime_weights": "interp.explain.lime_local:lime_weights",
    "mask_rows": "interp.explain.masking:mask_rows",
    "pack": "interp.explain.masking:pack",
    "pattern_scores": "interp.explain.attention:pattern_scores",
    "prepare": "interp.explain.target:prepare",
    "rank_agreement": "interp.explain.report:rank_agreement",
    "repeated_tokens": "interp.explain.attention:repeated_tokens",
    "shap_values": "interp.explain.shapley:shap_values",
    "RowScorer": "interp.explain.masking:RowScorer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
