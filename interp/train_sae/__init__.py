"""`interp train-sae`: an activation stream -> `sae.training`; held-out evaluation; the report.

from interp.train_sae import TrainSAEConfig, train_sae_run
result = train_sae_run(TrainSAEConfig(layer=(12,)))
result.sae_dirs   # {hook: folder}, each opened by sae.load_sae or SAELens's SAE.load_from_disk
"""

from interp.lazy import lazy_exports

_EXPORTS = {
    "TrainSAEConfig": "interp.train_sae.config:TrainSAEConfig",
    "train_sae_run": "interp.train_sae.run:train_sae_run",
    "TrainSAEResult": "interp.train_sae.run:TrainSAEResult",
    "evaluate_sae": "interp.train_sae.evaluate:evaluate_sae",
    "evaluate_saes": "interp.train_sae.evaluate:evaluate_saes",
    "evaluate_run": "interp.train_sae.evaluate:evaluate_run",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
