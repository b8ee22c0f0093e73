"""The SAE training report: curves over training tokens and held-out feature densities."""

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from interp.train_sae.evaluate import HEADLINE_METRICS, metric_text
from interp.viz.colors import series_color
from interp.viz.html import write_html
from sae.metrics import log_feature_density

CURVES = (
    ("loss", "loss"),
    ("l0", "L0"),
    ("explained_variance", "explained variance"),
    ("dead_fraction", "dead fraction"),
)


def sae_report(
    history: list[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    densities: dict[str, torch.Tensor],
) -> go.Figure:
    """Training curves per SAE (one colour per hook) and each SAE's log10 feature density.

    `history` rows are {"tokens": int, "metrics": {hook: {name: value}}}; `metrics` holds the
    held-out numbers shown in the title; `densities` the per-latent firing frequencies.
    """
    titles = [t for _, t in CURVES] + ["log10 feature density (training)", "held-out metrics"]
    fig = make_subplots(
        rows=3, cols=2, subplot_titles=titles, specs=[[{}, {}], [{}, {}], [{}, {"type": "table"}]]
    )
    tokens = [row["tokens"] for row in history]
    for i, hook in enumerate(metrics):
        colour = series_color(i)
        for j, (key, _) in enumerate(CURVES):
            ys = [row["metrics"].get(hook, {}).get(key) for row in history]
            fig.add_trace(
                go.Scatter(
                    x=tokens,
                    y=ys,
                    name=hook,
                    legendgroup=hook,
                    showlegend=j == 0,
                    line={"color": colour},
                ),
                row=j // 2 + 1,
                col=j % 2 + 1,
            )
        logd = log_feature_density(densities[hook].float()).clamp(min=-10).tolist()
        fig.add_trace(
            go.Histogram(
                x=logd,
                name=hook,
                legendgroup=hook,
                showlegend=False,
                marker={"color": colour},
                opacity=0.7,
                nbinsx=50,
            ),
            row=3,
            col=1,
        )
    keys = HEADLINE_METRICS
    cells = [list(keys)] + [[metric_text(metrics[h], k) for k in keys] for h in metrics]
    fig.add_trace(
        go.Table(header={"values": ["metric", *metrics]}, cells={"values": cells}), row=3, col=2
    )
    for row in range(1, 3):
        for col in range(1, 3):
            fig.update_xaxes(title_text="training tokens", row=row, col=col)
    fig.update_layout(height=1000, title="SAE training report", barmode="overlay")
    return fig


def write_report(
    run_dir: Path,
    history: list[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    densities: dict[str, torch.Tensor],
) -> Path:
    """`sae_report` as the run's offline report.html (written atomically)."""
    figure = sae_report(history, metrics, {h: densities[h] for h in metrics})
    return write_html(Path(run_dir) / "report.html", figure, title="SAE training report")
