"""Ablation, activation patching, attribution patching (and IG) and edge circuits, batched.

Names load on first use (`interp.lazy`), so `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "exact_patch": "interp.patching.exact:exact_patch",
    "ablate": "interp.patching.exact:ablate",
    "patch_cells": "interp.patching.exact:patch_cells",
    "attribution_patch": "interp.patching.attribution:attribution_patch",
    "edge_attribution": "interp.patching.edges:edge_attribution",
    "exact_edges": "interp.patching.edges:exact_edges",
    "EdgeResult": "interp.patching.edges:EdgeResult",
    "PatchResult": "interp.patching.result:PatchResult",
    "Metric": "interp.patching.metric:Metric",
    "logit_diff_metric": "interp.patching.metric:logit_diff_metric",
    "prob_metric": "interp.patching.metric:prob_metric",
    "ce_metric": "interp.patching.metric:ce_metric",
    "kl_metric": "interp.patching.metric:kl_metric",
    "normalise": "interp.patching.metric:normalise",
    "make_task": "interp.patching.tasks:make_task",
    "prompt_pair": "interp.patching.inputs:prompt_pair",
    "single_token": "interp.patching.inputs:single_token",
    "PatchingError": "interp.patching.inputs:PatchingError",
    "PatchConfig": "interp.patching.config:PatchConfig",
    "patch_run": "interp.patching.run:patch_run",
    "heatmap": "interp.patching.figures:heatmap",
    "circuit_graph": "interp.patching.figures:circuit_graph",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
