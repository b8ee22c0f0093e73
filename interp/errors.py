"""The toolkit's exceptions: bad input that the user can fix, each with a message that says what
was wrong, what is valid and what to do next.

All derive from `InterpError`, itself a `ValueError`, so the CLI can print them as one clean line
instead of a traceback, and callers that already catch `ValueError` keep working.
"""


class InterpError(ValueError):
    """Bad input to the toolkit; the message is meant for the user, not the developer."""


class ModelLoadError(InterpError):
    """A model spec that names no loadable model (missing folder, missing embedded weights)."""


class OfflineError(InterpError):
    """A hub model or dataset was asked for, but the hub could not be reached."""


class HookNameError(InterpError):
    """An unknown hook name, site or out-of-range layer."""


class DataError(InterpError):
    """A text source that cannot be read (missing file, unknown format, missing field)."""


class CacheError(InterpError):
    """An activation cache that is missing, corrupt, or captured with other settings."""


class RunStopped(InterpError):
    """A long run stopped before its end (a signal, a diverged loss); the message says where its
    checkpoint is and the command that resumes it. `exit_code` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InterpWarning(UserWarning):
    """Something was recovered from or left out (a damaged line of a record); the CLI shows it as
    one `warning:` line."""
