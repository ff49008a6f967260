"""Timestamps of things that happened, keyed by what happened, with waiting.

Every latency in the suite is `mark(end) - mark(start)` on one clock,
`time.monotonic()` (CLOCK_MONOTONIC, shared by all processes on a Linux host,
so a driver process and the benchmark compare directly). Marks arrive from
other threads (watch streams) or other processes (driver probes over UDP,
`bench.probe`); `Marks.wait(key)` blocks until that key has been marked.
Keys are tuples such as `("watch", "lamp-0", 17.0)`: source, object, the value
that identifies the trial.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class Timeout(Exception):
    """An awaited mark did not arrive: the system under test lost or delayed the event."""


class Marks:
    def __init__(self) -> None:
        self._times: dict[Hashable, float] = {}
        self._cond = threading.Condition()

    def mark(self, key: Hashable, t: float) -> None:
        """Record `key` at time `t`; the first mark of a key wins (later ones are repeats)."""
        with self._cond:
            if key not in self._times:
                self._times[key] = t
                self._cond.notify_all()

    def wait(self, key: Hashable, timeout: float = 30.0) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: key in self._times, timeout):
                raise Timeout(f"no {key!r} within {timeout} s")
            return self._times.pop(key)

    def clear(self) -> None:
        with self._cond:
            self._times.clear()
