"""`show(source, feature)`: one latent's view inline in Jupyter (the dashboard page for that one
feature, in an iframe, plotly.js included: offline, about 5 MB per call)."""

import json
from html import escape
from pathlib import Path
from typing import Any

from interp.dashboard.config import DashboardError
from interp.dashboard.page import dashboard_html
from interp.dashboard.run import Dashboard


class FeatureView:
    """Renders as the feature's page in a notebook; `.html` is the page itself."""

    def __init__(self, html: str, height: int = 900) -> None:
        self.html, self.height = html, height

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{escape(self.html, quote=True)}" sandbox="allow-scripts" '
            f'style="width:100%;height:{self.height}px;border:1px solid #ddd"></iframe>'
        )


def _from_folder(folder: Path, feature: int) -> str:
    path = folder / "features" / f"{feature}.json"
    if not path.is_file():
        raise DashboardError(f"{folder} has no feature {feature} ({path} is missing)")
    record = json.loads(path.read_text())
    vocab: dict[str, int] = {}

    def ids(tokens: list[str]) -> list[int]:
        return [vocab.setdefault(t, len(vocab)) for t in tokens]

    record["top"] = [{**e, "tokens": ids(e["tokens"])} for e in record["top"]]
    for g in record["quantiles"]:
        g["examples"] = [{**e, "tokens": ids(e["tokens"])} for e in g["examples"]]
    lg = record["logits"]
    lg["top"] = [[ids([t])[0], v] for t, v in lg["top"]]
    lg["bottom"] = [[ids([t])[0], v] for t, v in lg["bottom"]]
    if record["label"] is not None:
        lab = record["label"]
        lab["lift"] = [[ids([t])[0], v] for t, v in lab["lift"]]
        nxt = lab["next_token"]
        lab["next_token"] = None if nxt is None else ids([nxt])[0]
    summary = json.loads((folder / "summary.json").read_text())
    return dashboard_html(
        [record], list(vocab), {"n_tokens": summary["n_tokens"], "sae": str(folder)}
    )


def show(source: Any, feature: int, *, tokens: int = 65_536, model: Any = None) -> FeatureView:
    """One latent's view. `source`: a `Dashboard`, a folder written by `interp dashboard`, an
    SAE folder, or an SAE module (then a pass over `tokens` tokens of the embedded corpus is run
    first; `model` defaults to the SAE's model_name)."""
    if isinstance(source, Dashboard):
        if feature not in source.labels and feature not in source.features:
            raise DashboardError(f"feature {feature} is not in this dashboard")
        return FeatureView(dashboard_html([source.feature(feature)], source.vocab, source.meta))
    if isinstance(source, str | Path) and (Path(source) / "features").is_dir():
        return FeatureView(_from_folder(Path(source), feature))
    return show(_quick_dashboard(source, feature, tokens, model), feature)


def _quick_dashboard(source: Any, feature: int, tokens: int, model: Any) -> Dashboard:
    from interp.dashboard.config import parse_features
    from interp.dashboard.output import check_model_fits
    from interp.dashboard.run import compute_dashboard, contexts_for, load_dashboard_sae
    from interp.data import iter_contexts, iter_texts
    from interp.models import load_model

    if isinstance(source, str | Path):
        sae, hook = load_dashboard_sae(source)
        name = str(source)
    else:
        sae, hook, name = source, source.cfg.hook_name, None
    parse_features(str(feature), sae.cfg.d_sae)
    if model is None or isinstance(model, str):
        model = load_model(model or getattr(sae.cfg, "model_name", None) or "default", device="cpu")
    hook = check_model_fits(model, sae, hook)
    ctx_len = 128
    contexts = iter_contexts(iter_texts("default", seed=1), model.tokenizer, ctx_len)
    dash = compute_dashboard(
        model,
        sae,
        hook,
        contexts,
        contexts_for(tokens, ctx_len),
        contexts_for(8192, ctx_len),
        features=[feature],
    )
    dash.meta["sae"] = name
    return dash
