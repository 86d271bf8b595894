"""Kill tests stop a process at a known point: the process pauses itself (``FEATSPACE_PAUSE_AFTER_EPOCH``, or
``FakeTrain(pause_after_epoch=...)``) once that epoch's checkpoint is on disk and says so on stderr; the test
reads stderr until it sees that line, then kills. Nothing races a clock; a watchdog ends a process that never
pauses, so a broken hook fails the test instead of hanging it."""

from __future__ import annotations

import subprocess
import threading

from featspace.train.fit import PAUSE_MESSAGE

#: the part of the pause line that does not depend on the epoch
MARKER = PAUSE_MESSAGE.split("{epoch}")[0]


def start_and_wait_for_pause(command: list[str], *, watchdog_seconds: float = 1200, **popen: object
                             ) -> tuple[subprocess.Popen, list[str]]:
    """Start ``command`` and return once it printed the pause line (the process is then blocked, alive), with
    the stderr lines read so far. Raises AssertionError if it exits first."""
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, **popen)  # type: ignore[call-overload]
    watchdog = threading.Timer(watchdog_seconds, proc.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if MARKER in line:
                return proc, lines
    finally:
        watchdog.cancel()
    proc.wait()
    raise AssertionError(f"the process ended (exit {proc.returncode}) before it paused:\n" + "".join(lines[-30:]))
