"""Steering vectors: extraction, application (also during generation), evaluation, export and import.

Names load on first use (`interp.lazy`), so `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "SteeringVector": "interp.steering.vector:SteeringVector",
    "SteeringError": "interp.steering.vector:SteeringError",
    "save_vector": "interp.steering.vector:save_vector",
    "load_vector": "interp.steering.vector:load_vector",
    "load_any": "interp.steering.io:load_any",
    "steer": "interp.steering.vector:steer",
    "ablate": "interp.steering.vector:ablate",
    "ablation_hooks": "interp.steering.vector:ablation_hooks",
    "Pairs": "interp.steering.concepts:Pairs",
    "CONCEPTS": "interp.steering.concepts:CONCEPTS",
    "concept_pairs": "interp.steering.concepts:concept_pairs",
    "read_pairs": "interp.steering.concepts:read_pairs",
    "extract": "interp.steering.extraction:extract",
    "from_sae": "interp.steering.extraction:from_sae",
    "mean_diff": "interp.steering.extraction:mean_diff",
    "pca_diff": "interp.steering.extraction:pca_diff",
    "probe": "interp.steering.extraction:probe",
    "sweep": "interp.steering.evaluate:sweep",
    "ablation_eval": "interp.steering.evaluate:ablation_eval",
    "side_effects": "interp.steering.evaluate:side_effects",
    "write_gguf": "interp.steering.gguf:write_gguf",
    "read_gguf": "interp.steering.gguf:read_gguf",
    "sweep_figure": "interp.steering.figures:sweep_figure",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
