"""SIGINT and SIGTERM as one clear path: the run is marked "interrupted" (it resumes from its last checkpoint)
and the command exits 130 or 143 with one line, as a scheduler expects of a killed job.

Lightning would otherwise end the process itself: on Ctrl-C it calls ``sys.exit(1)``, and on SIGTERM it only sets
a flag and ends ``fit`` with a bare ``SystemExit`` (status 0, which a scheduler reads as success). The commands
install :func:`handle_signals` for their duration; Lightning keeps our SIGTERM handler beside its own, and
:func:`reraise_interrupt` turns Lightning's exit back into :class:`Interrupted`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Interrupted", "handle_signals", "reraise_interrupt"]

#: the signal received while handle_signals is active (None: none)
_received: int | None = None


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _raise(signum: int, frame: object) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread while the block runs."""
    global _received
    _received = None
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def reraise_interrupt(lightning_exit: SystemExit) -> None:
    """Called with the SystemExit Lightning ended ``fit`` with: raise :class:`Interrupted` when a signal caused
    it (this process's handlers saw it), else the SystemExit itself."""
    if _received is not None:
        raise Interrupted(_received) from None
    raise lightning_exit
