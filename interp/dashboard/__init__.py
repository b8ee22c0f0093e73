"""What each SAE latent means: feature statistics in one pass, labels, HTML, JSON, Neuronpedia export.

Names load on first use (`interp.lazy`), so `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DashboardConfig": "interp.dashboard.config:DashboardConfig",
    "DashboardError": "interp.dashboard.config:DashboardError",
    "Dashboard": "interp.dashboard.run:Dashboard",
    "compute_dashboard": "interp.dashboard.run:compute_dashboard",
    "load_dashboard_sae": "interp.dashboard.run:load_dashboard_sae",
    "dashboard_run": "interp.dashboard.output:dashboard_run",
    "DashboardResult": "interp.dashboard.output:DashboardResult",
    "FeatureAccumulator": "interp.dashboard.stats:FeatureAccumulator",
    "FeatureStats": "interp.dashboard.stats:FeatureStats",
    "label_features": "interp.dashboard.labels:label_features",
    "logit_effects": "interp.dashboard.weights:logit_effects",
    "decoder_neighbours": "interp.dashboard.weights:decoder_neighbours",
    "show": "interp.dashboard.notebook:show",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
