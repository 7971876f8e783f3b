"""Telling the settlement sweeper when a tab's cap ran out, so ``cap_reached`` fires on time.

The sweeper finds every settlement trigger on its own within ``TIPMETER_SETTLE_RECHECK_MAX_MS``
(5 minutes by default). This process knows one of them sooner: when a tip or a session leaves a
tab with less than the smallest tip, its ``cap_reached`` trigger falls due one grace period
later (``TIPMETER_SETTLE_CAP_GRACE_MS``, time for the viewer to raise the cap). Moving the tab's
next look to that time is a hint only: losing it (Redis unavailable, the process killed) delays
the settlement to the sweeper's next regular look, and never changes what is captured.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from metering.clock import Clock
from metering.errors import StoreError
from metering.outcomes import Code, TabRef, TipResult
from metering.store import Store
from settlement.queue import schedule_look

log = logging.getLogger("tipmeter.triggers")

#: Tabs waiting to be hinted at once; past this, hints are dropped (the sweeper still looks).
PENDING_MAX: Final = 10_000


class CapWatch:
    """Hints the sweeper about exhausted tabs, in the background and in batches."""

    def __init__(self, store: Store, clock: Clock, *, grace_ms: int, tip_min_minor: int) -> None:
        self._store = store
        self._clock = clock
        self._grace_ms = grace_ms
        self._tip_min_minor = tip_min_minor
        self._pending: dict[TabRef, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def tip_applied(self, customer: str, tab_id: str, result: TipResult) -> None:
        """Look at a tip's result (on the hot path: nothing is built unless it matters): if it
        was applied now and left less than the smallest tip, the tab is exhausted."""
        if result.code is Code.APPLIED and result.balance.remaining_minor < self._tip_min_minor:
            self.exhausted(TabRef(customer, tab_id))

    def exhausted(self, ref: TabRef) -> None:
        """Ask the sweeper to look at ``ref`` once its grace period is over."""
        if ref not in self._pending and len(self._pending) >= PENDING_MAX:
            self.dropped += 1
            return
        self._pending[ref] = self._clock.now_ms() + self._grace_ms
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="cap watch")

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                for ref, at_ms in batch.items():
                    await schedule_look(self._store, ref, at_ms)
            except StoreError as exc:
                log.warning(
                    "could not hint the sweeper; it will find the tabs on its own",
                    extra={"fields": {"tabs": len(batch), "why": repr(exc)}},
                )

    async def aclose(self) -> None:
        """Send the hints still waiting."""
        if self._task is not None:
            await self._task
