"""Plotly figures of the explainers: token-coloured text for every attribution method on one
colour scale, a layer x head entropy heatmap, and one head's attention pattern on one text."""

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

from interp.explain.attribution import Attribution
from interp.viz.colors import DIVERGING, SEQUENTIAL


def _shown(token: str) -> str:
    return token.replace("\n", "⏎").replace(" ", "␣") if token.strip() == "" else token


def attributions_figure(
    attributions: Sequence[Attribution], vmax: float | None = None, normalise: bool = True
) -> go.Figure:
    """One row of token-coloured text per method, all on one diverging colour scale.

    With `normalise`, each row is divided by its largest |value| (methods differ in units and
    spread; the colours then compare ranks and signs); the hover shows the raw value. `vmax`
    is the value shown at full colour (default 1 when normalised, else the largest |value|).
    """
    if not attributions:
        raise ValueError("attributions_figure needs at least one attribution")
    tokens = attributions[0].tokens
    raw = np.array([a.values for a in attributions], dtype=float)
    scale = np.abs(raw).max(1, keepdims=True) if normalise else np.ones((len(raw), 1))
    z = raw / np.where(scale > 0, scale, 1.0)
    vmax = vmax if vmax is not None else (1.0 if normalise else float(np.abs(z).max() or 1.0))
    names = [a.method for a in attributions]
    text = [[_shown(t) for t in tokens] for _ in attributions]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(len(tokens))),
            y=names,
            text=text,
            texttemplate="%{text}",
            customdata=raw,
            hovertemplate="%{y} · token %{x} %{text}: %{customdata:.4g}<extra></extra>",
            colorscale=DIVERGING,
            zmid=0,
            zmin=-vmax,
            zmax=vmax,
            colorbar={"title": "value / max|value|" if normalise else "value"},
        )
    )
    fig.update_layout(
        title=f"Token attributions: {attributions[0].target}",
        yaxis={"autorange": "reversed"},
        xaxis={"title": "token position"},
        height=120 + 50 * len(attributions),
    )
    return fig


def entropy_figure(entropy: Tensor, title: str = "Attention entropy (normalised)") -> go.Figure:
    """Layer x head heatmap of normalised entropy (0 = one key, 1 = uniform)."""
    e = entropy.detach().cpu().numpy()
    fig = go.Figure(
        go.Heatmap(
            z=e,
            x=[f"H{h}" for h in range(e.shape[1])],
            y=[f"L{layer}" for layer in range(e.shape[0])],
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            hovertemplate="%{y}%{x}: %{z:.3f}<extra></extra>",
            colorbar={"title": "H / log(keys)"},
        )
    )
    fig.update_layout(title=title, yaxis={"autorange": "reversed"}, height=120 + 28 * e.shape[0])
    return fig


def scores_figure(scores: dict[str, Tensor]) -> go.Figure:
    """One layer x head heatmap per pattern score, side by side."""
    from plotly.subplots import make_subplots

    names = list(scores)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    for i, name in enumerate(names):
        s = scores[name].detach().cpu().numpy()
        fig.add_trace(
            go.Heatmap(
                z=s,
                x=[f"H{h}" for h in range(s.shape[1])],
                y=[f"L{layer}" for layer in range(s.shape[0])],
                colorscale=SEQUENTIAL,
                zmin=0,
                zmax=1,
                showscale=i == 0,
                hovertemplate=f"{name} %{{y}}%{{x}}: %{{z:.3f}}<extra></extra>",
            ),
            row=1,
            col=i + 1,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Head pattern scores on repeated random tokens", height=560)
    return fig


def pattern_figure(pattern: Tensor, tokens: Sequence[str], layer: int, head: int) -> go.Figure:
    """One head's attention pattern [query, key] on one text, tokens on both axes."""
    p = pattern.detach().cpu().numpy()
    labels = [f"{i} {_shown(t)}" for i, t in enumerate(tokens)]
    fig = go.Figure(
        go.Heatmap(
            z=p,
            x=labels,
            y=labels,
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            hovertemplate="query %{y} → key %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Attention pattern of L{layer}H{head}",
        yaxis={"autorange": "reversed", "title": "query"},
        xaxis={"title": "key"},
        height=200 + 22 * len(tokens),
    )
    return fig
