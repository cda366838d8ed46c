"""Clock abstraction so sans-I/O cores can be driven by a fake clock in tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds and wall-clock seconds."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock, for timeouts and intervals."""
        ...

    def time(self) -> float:
        """Seconds since the epoch, for timestamps shown to people."""
        ...


class MonotonicClock:
    """The real clock."""

    def monotonic(self) -> float:
        """Seconds on the system's monotonic clock."""
        return time.monotonic()

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()
