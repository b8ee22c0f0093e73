"""Plotly figures. Functions here return figures; callers show them or write HTML."""
