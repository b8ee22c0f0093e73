"""interp: from a model's activations to findings, and from findings to a safer model.

The names below load on first use (so `import interp` and `interp --help` do not import torch);
`dir(interp)` lists them, so a notebook's tab completion finds them.

    import interp
    model = interp.load_model()                      # the embedded default model
    acts = interp.capture_activations(model, tokens, ["blocks.12.hook_resid_post"])
    result = interp.train_sae_run(interp.TrainSAEConfig(layer=(12,)))
"""

from interp.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "interp.models:load_model",
    "resolve_hook": "interp.hooks:resolve_hook",
    "capture_activations": "interp.capture.core:capture",  # `interp.capture` is the subpackage
    "activation_stream": "interp.capture.core:activation_stream",
    "CaptureConfig": "interp.capture.config:CaptureConfig",
    "capture_to_disk": "interp.capture.run:capture_to_disk",
    "open_cache": "interp.capture.cache:open_cache",
    "iter_cache": "interp.capture.cache:iter_cache",
    "TrainSAEConfig": "interp.train_sae.config:TrainSAEConfig",
    "train_sae_run": "interp.train_sae.run:train_sae_run",
    "evaluate_sae": "interp.train_sae.evaluate:evaluate_sae",
    "intervene": "interp.interventions:intervene",
    "iter_texts": "interp.data:iter_texts",
    "iter_contexts": "interp.data:iter_contexts",
    "metrics": "interp.metrics",
    "interventions": "interp.interventions",
    "hooks": "interp.hooks",
    "models": "interp.models",
    "data": "interp.data",
    "errors": "interp.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
