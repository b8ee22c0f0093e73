"""The SAE package's user-error types: bad input the caller can fix.

`SAEError` is a `ValueError`, so callers that catch `ValueError` keep working; a command-line
front end catches `SAEError` to print one line instead of a traceback. Any other exception is a bug.
"""


class SAEError(ValueError):
    """Bad input to the SAE package; the message is meant for the user."""


class ConfigError(SAEError):
    """An `SAEConfig` or `TrainConfig` value out of range, or an unknown field."""
