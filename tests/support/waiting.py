"""Waiting in tests without guessing how long things take: poll a condition with a deadline.

A fixed sleep is either too short on a busy machine (the test flakes) or too long everywhere
(the suite crawls). These helpers poll a condition often and give up only at a generous
deadline, with a message that says what never happened.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Final

#: How long a condition may take by default before the test fails: generous, because a busy
#: two-core machine running eight engineers' tests is slow, and a pass returns at once anyway.
TIMEOUT_S: Final = 20.0
#: How often a condition is asked again.
INTERVAL_S: Final = 0.02


async def eventually(
    condition: Callable[[], Awaitable[object]] | Callable[[], object],
    *,
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    what: str = "",
) -> None:
    """Ask ``condition`` (sync or async) until it answers something truthy; fail the test if
    it has not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = condition()
        value = await outcome if inspect.isawaitable(outcome) else outcome
        if value:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or _name(condition)}")
        await asyncio.sleep(interval_s)


def eventually_sync(
    condition: Callable[[], object],
    *,
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    what: str = "",
) -> None:
    """:func:`eventually` for code outside an event loop (a thread, a synchronous fixture)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or _name(condition)}")
        time.sleep(interval_s)


def _name(condition: Callable[..., object]) -> str:
    return getattr(condition, "__qualname__", repr(condition))
