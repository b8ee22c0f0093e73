"""Figures of steering evaluations (plotly, offline HTML via `interp.viz.write_html`)."""

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.viz.colors import series_color

if TYPE_CHECKING:
    from interp.steering.evaluate import Sweep


def sweep_figure(sweep: "Sweep") -> go.Figure:
    """Behaviour (judged rate, left axis) and KL to the unsteered model on neutral text (right
    axis, nats) against scale, in one figure; the teacher-forced score is in the hover text."""
    scales = [r.scale for r in sweep.rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(
            x=scales,
            y=[r.rate for r in sweep.rows],
            name=sweep.behaviour,
            mode="lines+markers",
            line={"color": series_color(0)},
            customdata=[[r.score, r.ppl] for r in sweep.rows],
            hovertemplate=(
                "scale %{x}<br>rate %{y:.2f}<br>"
                + sweep.score_name
                + " %{customdata[0]:.3f}<br>perplexity %{customdata[1]:.2f}<extra></extra>"
            ),
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=scales,
            y=[r.kl for r in sweep.rows],
            name="KL(unsteered || steered), neutral text",
            mode="lines+markers",
            line={"color": series_color(1), "dash": "dot"},
        ),
        secondary_y=True,
    )
    fig.update_layout(
        title=f"Steering '{sweep.concept}' (positions: {sweep.positions})",
        xaxis_title="scale",
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
    )
    fig.update_yaxes(title_text="share of held-out prompts", range=[-0.02, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="KL (nats/token)", secondary_y=True)
    return fig
