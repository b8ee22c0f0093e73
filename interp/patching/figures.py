"""Plotly figures of patching results: a heatmap of a grid (layer x position with token labels,
layer x head) with hover values, a circuit graph of the top edges, and a scatter of two
methods' effects. Each builder takes result values and returns a `go.Figure`."""

from typing import Any

import plotly.graph_objects as go

from interp.patching.edges import EdgeResult
from interp.patching.result import PatchResult
from interp.viz.colors import DIVERGING


def _matrix(result: PatchResult, normalised: bool):
    """(z [rows][cols], x labels, y labels, raw effects) with layers as rows."""
    values = result.normalised if normalised else result.effect
    effect = result.effect
    labels = result.labels
    if len(result.axes) == 1:
        return values[:, None].tolist(), ["all"], labels["layer"], effect[:, None].tolist()
    if len(result.axes) == 2:
        return values.tolist(), labels[result.axes[1]], labels["layer"], effect.tolist()
    x = [f"{p} {h}" for p in labels["pos"] for h in labels["head"]]
    n = len(x)
    return values.reshape(-1, n).tolist(), x, labels["layer"], effect.reshape(-1, n).tolist()


def heatmap(result: PatchResult, normalised: bool = True, title: str | None = None) -> go.Figure:
    """Layers down, positions (token labels) or heads across; colour is the normalised metric
    (0 corrupt, 1 clean) or, with `normalised=False` or for ablation, the change in the metric."""
    norm = normalised and result.corrupt == result.corrupt and result.clean != result.corrupt
    norm = norm and result.start == result.corrupt
    z, x, y, effect = _matrix(result, norm)
    what = "normalised metric" if norm else f"change in {result.metric}"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            customdata=effect,
            colorscale=DIVERGING,
            zmid=0,
            colorbar={"title": what},
            hovertemplate=(
                "%{y} %{x}<br>"
                + what
                + ": %{z:.4f}<br>change in "
                + result.metric
                + ": %{customdata:.4f}<extra></extra>"
            ),
        )
    )
    head = title or f"{result.method} patching, {result.grid} grid ({result.metric})"
    sub = f"clean {result.clean:.3f}, corrupt {result.corrupt:.3f}"
    fig.update_layout(
        title=f"{head}<br><sup>{sub}</sup>",
        yaxis={"autorange": "reversed", "title": "layer"},
        xaxis={"title": " x ".join(a for a in result.axes[1:]) or "", "tickangle": -45},
        height=max(350, 22 * len(y) + 150),
    )
    return fig


def _positions(result: EdgeResult) -> dict[str, tuple[float, float]]:
    """Node -> (x, y): layers go up, heads across, the MLP to their right."""
    n_heads = max((n.head for n in result.senders if n.head is not None), default=0) + 1
    pos: dict[str, tuple[float, float]] = {}
    for node in [*result.senders, *result.receivers]:
        if node.kind == "embed":
            pos[node.name] = (n_heads / 2, -1.0)
        elif node.kind == "logits":
            pos[node.name] = (n_heads / 2, node.layer + 0.0)
        elif node.kind == "head":
            pos[node.name] = (float(node.head), node.layer - 0.25)
        else:
            pos[node.name] = (float(n_heads) + 0.5, node.layer + 0.25)
    return pos


def circuit_graph(result: EdgeResult, n: int = 20, title: str | None = None) -> go.Figure:
    """The top-n edges by |score|: blue raises the metric toward the clean run, red lowers it;
    width grows with |score|. Hover an edge's midpoint for its score."""
    edges = result.circuit(n)
    pos = _positions(result)
    top = max((abs(v) for _, _, v in edges), default=1.0) or 1.0
    traces: list[Any] = []
    mid_x, mid_y, mid_text = [], [], []
    for s, r, v in edges:
        (x0, y0), (x1, y1) = pos[s], pos[r]
        traces.append(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={"width": 1 + 7 * abs(v) / top, "color": "#2166ac" if v > 0 else "#b2182b"},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        mid_x.append((x0 + x1) / 2)
        mid_y.append((y0 + y1) / 2)
        mid_text.append(f"{s} -> {r}: {v:+.4f}")
    used = sorted({x for s, r, _ in edges for x in (s, r)}, key=lambda k: pos[k][1])
    traces.append(
        go.Scatter(
            x=mid_x,
            y=mid_y,
            mode="markers",
            marker={"size": 4, "opacity": 0},
            text=mid_text,
            hoverinfo="text",
            showlegend=False,
        )
    )
    traces.append(
        go.Scatter(
            x=[pos[k][0] for k in used],
            y=[pos[k][1] for k in used],
            mode="markers+text",
            text=used,
            textposition="top center",
            marker={"size": 12, "color": "#444"},
            hoverinfo="text",
            showlegend=False,
        )
    )
    fig = go.Figure(traces)
    head = title or f"circuit: top {len(edges)} edges ({result.method}, {result.metric})"
    fig.update_layout(
        title=head,
        xaxis={"visible": False},
        yaxis={"title": "layer", "zeroline": False},
        height=700,
    )
    return fig


def agreement(a: PatchResult, b: PatchResult, title: str | None = None) -> go.Figure:
    """Scatter of two methods' effects on one grid, one point per cell, hover names the cell."""
    import torch

    labels = [
        a.cell_label(tuple(int(i) for i in torch.unravel_index(torch.tensor(k), a.values.shape)))
        for k in range(a.values.numel())
    ]
    fig = go.Figure(
        go.Scatter(
            x=a.effect.flatten().tolist(),
            y=b.effect.flatten().tolist(),
            mode="markers",
            text=labels,
            hovertemplate="%{text}<br>"
            + a.method
            + " %{x:.4f}<br>"
            + b.method
            + " %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or f"{a.grid} grid: {b.method} against {a.method}",
        xaxis={"title": f"{a.method} effect"},
        yaxis={"title": f"{b.method} effect"},
    )
    return fig
