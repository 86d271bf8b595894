"""Seconds per stage of a long job, for the benchmarks that say where the time goes (``benchmarks/``)."""

from __future__ import annotations

import time

__all__ = ["Stopwatch"]


class Stopwatch:
    """Adds the seconds since the previous lap (or since it was made) to ``timings[name]`` at each
    :meth:`lap`; without a ``timings`` dict it does nothing, so a function can take one optionally."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings, self.last = timings, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now
