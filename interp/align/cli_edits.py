"""`interp align bake|orthogonalize` (owned by the weight-edit work)."""

import typer


def register_edits(app: typer.Typer) -> None:
    """Add the weight-edit commands to `interp align`."""
