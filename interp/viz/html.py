"""Offline HTML: figures written to one self-contained file, plotly.js embedded once, no CDN.

The file is written atomically (whole or absent), so a crash never leaves half a report.
"""

from collections.abc import Sequence
from html import escape
from pathlib import Path

import plotly.graph_objects as go

from sae.fsutil import write_text_atomically


def figures_html(figures: Sequence[go.Figure], title: str) -> str:
    """One HTML page holding `figures` in order; plotly.js is inlined with the first only."""
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, fig in enumerate(figures)
    ]
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )


def plotly_script() -> str:
    """plotly.js inline as one `<script>` element, for pages that draw their figures from
    their own script (embed it once per page)."""
    from plotly.offline import get_plotlyjs

    return f"<script>{get_plotlyjs()}</script>"


def write_html(path: str | Path, figures: go.Figure | Sequence[go.Figure], title: str) -> Path:
    """Write `figures` to `path` as one offline HTML file; returns the path."""
    figs = [figures] if isinstance(figures, go.Figure) else list(figures)
    path = Path(path)
    write_text_atomically(path, figures_html(figs, title))
    return path
