"""Token-coloured text: a sequence of tokens shown with a background per token (an activation,
an attribution), as HTML that escapes every token, so hostile text is shown, never run."""

from collections.abc import Sequence
from html import escape


def _background(value: float, vmax: float) -> str:
    """White at 0, blue for positive and red for negative values, full colour at |vmax|."""
    share = 0.0 if vmax <= 0 else max(-1.0, min(1.0, value / vmax))
    alpha = f"{abs(share):.3f}"
    return f"rgba(33,102,172,{alpha})" if share >= 0 else f"rgba(178,24,43,{alpha})"


def token_html(tokens: Sequence[str], values: Sequence[float], vmax: float | None = None) -> str:
    """`<span>`s, one per token, coloured by its value; the value is in the title (hover).

    `vmax` is the value shown at full colour (default: the largest |value|).
    """
    if len(tokens) != len(values):
        raise ValueError(f"token_html: {len(tokens)} tokens but {len(values)} values")
    vmax = max((abs(v) for v in values), default=0.0) if vmax is None else vmax
    spans = [
        f'<span style="background:{_background(v, vmax)}" title="{v:.4g}">'
        f"{escape(t).replace(chr(10), '⏎')}</span>"
        for t, v in zip(tokens, values, strict=True)
    ]
    return '<span style="white-space:pre-wrap;font-family:monospace">' + "".join(spans) + "</span>"
