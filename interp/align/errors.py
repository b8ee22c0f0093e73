"""The alignment capability's user errors."""

from interp.errors import InterpError


class AlignError(InterpError):
    """Bad input to an alignment command: the message says what was wrong and what is valid."""
