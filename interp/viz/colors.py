"""The one colour scheme of the toolkit's figures: categorical colours for series (hooks, SAEs,
heads) and a diverging scale for signed values (attributions, patching effects)."""

import plotly.colors

CATEGORICAL: tuple[str, ...] = tuple(plotly.colors.qualitative.D3)
"""Series colours, in order."""

DIVERGING = "RdBu"
"""Signed values: red negative, blue positive, white at zero (use with zmid=0)."""

SEQUENTIAL = "Viridis"
"""Non-negative magnitudes."""


def series_color(i: int) -> str:
    """The colour of the i-th series (cycles)."""
    return CATEGORICAL[i % len(CATEGORICAL)]
