"""SIGINT/SIGTERM -> finish the current step, write a checkpoint, then stop.

The handler only records the signal; the trainer checks it between steps, where the state is
consistent. A second signal while the first is pending is not deferred: a previous Python
handler, if any, is called, and KeyboardInterrupt is raised at once, without a checkpoint.
Handlers are installed only in the main thread (Python allows no other) and restored on exit.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn


class StopRequest:
    """Holds the first stop signal received, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def raise_for_signal(self) -> NoReturn:
        """KeyboardInterrupt for SIGINT; SystemExit(128 + signum) otherwise (SIGTERM: 143)."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt("training interrupted by SIGINT; checkpoint written")
        raise SystemExit(128 + (self.signum or 0))


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set `request.signum` instead of stopping."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.signum is not None:
            old = previous[signal.Signals(signum)]
            if callable(old):
                old(signum, frame)
            raise KeyboardInterrupt
        request.signum = signum

    for s in previous:
        signal.signal(s, handler)
    try:
        yield request
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
