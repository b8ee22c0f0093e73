"""`interp align dpo|bipo` (owned by the preference-training work)."""

import typer


def register_training(app: typer.Typer) -> None:
    """Add the preference-training commands to `interp align`."""
