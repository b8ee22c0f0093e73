"""Figures inline in Jupyter, offline: plotly's `notebook` renderer (plotly.js embedded in the
notebook once, by the first figure) without the MathJax `<script src=https://cdnjs...>` that
plotly adds to every figure it renders there. Our figures use no LaTeX, so nothing is lost.

    from interp.viz.notebook import use_offline_renderer
    use_offline_renderer()       # then fig.show() or a figure as a cell's value
"""

import re
from typing import Any

from plotly.io._base_renderers import NotebookRenderer

NAME = "interp_notebook"
"""The renderer's name in `plotly.io.renderers`."""

REMOTE_MATHJAX = re.compile(r'<script src="https?://[^"]*mathjax[^"]*"></script>', re.IGNORECASE)


class OfflineNotebookRenderer(NotebookRenderer):
    """plotly's NotebookRenderer (connected=False) whose HTML loads no script from the network."""

    def to_mimebundle(self, fig_dict: Any) -> dict[str, Any]:
        bundle = super().to_mimebundle(fig_dict)
        bundle["text/html"] = REMOTE_MATHJAX.sub("", bundle["text/html"])
        return bundle


def use_offline_renderer() -> None:
    """Make the offline notebook renderer plotly's default (it embeds plotly.js at once)."""
    import plotly.io as pio

    pio.renderers[NAME] = OfflineNotebookRenderer(connected=False)
    pio.renderers.default = NAME
