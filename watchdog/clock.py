"""Time is injected: nothing in the watchdog calls ``time.time()`` or sleeps directly.

The same engine runs in real time (the daemon, the demo) and in simulated time (tests, replay,
benchmarks) by being handed a different clock.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class RealClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SimClock:
    """Simulated time that only moves when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        with self._lock:
            self._t += seconds

    def set(self, t: float) -> None:
        with self._lock:
            if t < self._t:
                raise ValueError("time does not run backwards")
            self._t = t
