"""Time is an argument: nothing in metering or settlement reads the wall clock directly.

Production code is handed a :class:`SystemClock`; tests and simulations hand a
:class:`FakeClock` and move it by hand, so every rule that depends on time (idle timeouts, hold
expiry, per-second billing, leases) is tested without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time in integer milliseconds since the Unix epoch."""

    def now_ms(self) -> int:
        """Return the current time in milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        """Return the wall-clock time in milliseconds."""
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that only moves when told to; for tests and seeded simulations."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        """Return the fake time."""
        return self._now_ms

    def advance(self, delta_ms: int) -> int:
        """Move the clock forward by ``delta_ms`` (never backward) and return the new time."""
        if delta_ms < 0:
            raise ValueError("a FakeClock never goes backward")
        self._now_ms += delta_ms
        return self._now_ms
