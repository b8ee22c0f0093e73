"""`interp dashboard` as a library call: check the inputs, run the pass, write the folder.

    <out>/index.html              self-contained: index + one view per latent, no network
    <out>/features/<N>.json       one latent's record (token strings)
    <out>/neuronpedia/batch-*.json, explanations.jsonl
    <out>/summary.json            shown, dead, dense, label scores, timings
    <out>/config.json             the DashboardConfig

The folder is written whole or not at all (`sae.fsutil.write_dir_atomically`); an existing one
is replaced only with `force`.
"""

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.dashboard.config import DashboardConfig, DashboardError, parse_features
from interp.dashboard.neuronpedia import write_neuronpedia
from interp.dashboard.page import dashboard_html
from interp.dashboard.records import feature_record, with_strings
from interp.dashboard.run import (
    Dashboard,
    OnProgress,
    compute_dashboard,
    contexts_for,
    iter_dashboard_contexts,
    load_dashboard_sae,
    select,
)
from sae.fsutil import dump_json, write_dir_atomically, write_text_atomically

DENSE = 0.1
"""A latent firing on more than this share of tokens counts as dense (as sae.metrics)."""


@dataclass
class DashboardResult:
    """The written folder, the statistics, and the summary table's numbers."""

    out: Path
    dashboard: Dashboard
    features: list[int]
    summary: dict[str, Any]


def check_model_fits(model: Any, sae: Any, hook: str) -> str:
    """The checked hook name; the hook's width must be the SAE's d_in."""
    from interp.capture.core import capture
    from interp.hooks import check_hook_name

    name = check_hook_name(model, hook)
    width = capture(model, torch.zeros((1, 2), dtype=torch.long), [name])[name].shape[-1]
    if width != sae.cfg.d_in:
        raise DashboardError(
            f"the SAE reads {sae.cfg.d_in}-wide activations but {name} of this model is "
            f"{width} wide; pass the model it was trained on (--model) or its hook (--hook)"
        )
    return name


def summarize(dash: Dashboard, features: list[int]) -> dict[str, Any]:
    """Shown, dead and dense counts, and the label-score distribution, over `features`."""
    density = dash.stats.density
    scores = [dash.labels[f].score for f in features if dash.labels.get(f) is not None]
    quart = statistics.quantiles(scores, n=4) if len(scores) >= 2 else scores * 3
    return {
        "features_shown": len(features),
        "dead": sum(int(dash.stats.fires[f]) == 0 for f in features),
        "dense": sum(float(density[f]) > DENSE for f in features),
        "labelled": len(scores),
        "label_score_quartiles": [round(q, 3) for q in quart],
        "label_score_at_least_0.5": sum(s >= 0.5 for s in scores),
        "label_score_at_least_0.8": sum(s >= 0.8 for s in scores),
        **{
            k: dash.meta[k]
            for k in ("n_tokens", "n_heldout_tokens", "pass_seconds", "tokens_per_second")
        },
    }


def write_dashboard(
    out: Path, dash: Dashboard, features: list[int], cfg: DashboardConfig, summary: dict
) -> Path:
    """Write the output folder (see the module docstring) atomically."""
    records = [feature_record(dash, f, cfg.quantiles, cfg.per_quantile) for f in features]

    def write(tmp: Path) -> None:
        (tmp / "features").mkdir()
        for r in records:
            dump_json(tmp / "features" / f"{r['index']}.json", with_strings(r, dash.vocab))
        write_text_atomically(tmp / "index.html", dashboard_html(records, dash.vocab, dash.meta))
        write_neuronpedia(
            tmp / "neuronpedia", records, dash.vocab, dash.meta, cfg.neuronpedia_batch
        )
        dump_json(tmp / "summary.json", summary)
        write_text_atomically(tmp / "config.json", json.dumps(cfg.to_dict(), indent=2))

    return write_dir_atomically(out, write, overwrite=cfg.force)


def dashboard_run(cfg: DashboardConfig, on_progress: OnProgress | None = None) -> DashboardResult:
    """Check, load, run the pass, write `cfg.out`."""
    from interp.models import load_model
    from sae.device import resolve_device

    out = Path(cfg.out)
    if out.exists() and not cfg.force:
        raise DashboardError(
            f"output folder {cfg.out!r} already exists; pick another --out or pass --force"
        )
    if not cfg.sae:
        raise DashboardError("no SAE given: pass --sae FOLDER (an SAELens-format folder)")
    sae, saved_hook = load_dashboard_sae(cfg.sae)
    hook = cfg.hook or saved_hook
    if not hook:
        raise DashboardError(f"the SAE in {cfg.sae!r} names no hook; pass --hook NAME")
    wanted = parse_features(cfg.features, sae.cfg.d_sae) if cfg.features is not None else None
    model_spec = cfg.model or getattr(sae.cfg, "model_name", None) or "default"
    model = load_model(model_spec, device=cfg.device, dtype=cfg.dtype)
    sae = sae.to(resolve_device(cfg.device))
    hook = check_model_fits(model, sae, hook)
    n_ctx = contexts_for(cfg.tokens, cfg.ctx_len)
    dash = compute_dashboard(
        model,
        sae,
        hook,
        iter_dashboard_contexts(model, cfg),
        n_ctx,
        contexts_for(cfg.label_tokens, cfg.ctx_len),
        batch_size=cfg.batch_size,
        features=wanted,
        on_progress=on_progress,
        accumulator={
            "top_k": cfg.top_k,
            "sample": cfg.sample,
            "left": cfg.left,
            "right": cfg.right,
            "seed": cfg.seed,
        },
    )
    dash.meta |= {
        "sae": str(cfg.sae),
        "model": model_spec,
        "dataset": cfg.dataset,
        "n_contexts": n_ctx,
    }
    features = select(dash, cfg)
    summary = summarize(dash, features)
    write_dashboard(out, dash, features, cfg, summary)
    return DashboardResult(out, dash, features, summary)
