"""The `interp` command(s) of this capability. `register(app)` adds them to the root app."""

import typer


def register(app: typer.Typer) -> None:
    """Add this capability's command(s) to the root `interp` app."""
