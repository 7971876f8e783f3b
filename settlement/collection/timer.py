"""Collection on the settlement worker's timer: the sweep every interval, the outbox relay every
round.

Theory of operation. Every settlement worker's periodic loop calls :meth:`CollectionTimer.tick`
(about once a second, ``SettlementConfig.sweep_interval_ms``). Each tick relays the outbox
(webhooks a crash left behind are queued within a round), and once per
:attr:`CollectionTimer.interval_ms` runs :meth:`~settlement.collection.collector.Collector.sweep`:
cases opened for new declined or expired settlements, due retries run, unanswered attempts run
again by their number, spent cases closed.

Several workers tick at once, and that is safe without any coordination, because the sweep is
idempotent by what the database holds: a case's id derives from its settlement id and the
ledger keeps one case per settlement (``UNIQUE``, ``ON CONFLICT DO NOTHING``), so a case is
opened once; a retry reserves its attempt with the case row locked (``FOR UPDATE``) and a
partial unique index allows one attempt in flight per case, and the next retry time moves on
in the transaction that records the outcome, so a due retry is run once (a second worker finds
it ``busy`` or no longer due); closing and writing off lock the case and check its state
first. On top of that, a sweep runs only in the worker that holds a PostgreSQL advisory lock
for it (``pg_try_advisory_lock``, session-wide; the others skip the round), so workers do not
duplicate the work; the lock dies with its holder's connection, so a killed worker never holds
it up. The lock holds one pooled connection for the sweep's length, so the sweep needs a pool
of at least two (``TIPMETER_DATABASE_CONNECTIONS_MAX``; the default is 10). A tick never
raises: a database or Redis outage, or a bug met on one case, is logged and the next tick
tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from metering.errors import StoreError
from metering.store import Store
from settlement.collection.collector import CollectionConfig, Collector, SweepReport
from settlement.collection.outbox import Relay
from settlement.config import Checkpoint
from settlement.ledger.errors import LedgerError
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.webhooks import WebhookConfig

log = logging.getLogger("tipmeter.collection")

#: How often a worker sweeps collection by default (each sweep is a few queries when idle).
SWEEP_INTERVAL_MS_DEFAULT: Final = 60_000
#: The advisory lock the sweeping worker holds (an arbitrary constant: "collect!").
SWEEP_LOCK_ID: Final = 0x636F6C6C65637421


class CollectionTimer:
    """The collection work of one worker's periodic loop."""

    def __init__(
        self, collector: Collector, relay: Relay, *, interval_ms: int = SWEEP_INTERVAL_MS_DEFAULT
    ) -> None:
        if interval_ms <= 0:
            raise ValueError("the collection sweep interval must be positive")
        self.collector = collector
        self.relay = relay
        self.interval_ms = interval_ms
        self._next_sweep_ms: int | None = None

    async def tick(self, now_ms: int, *, force: bool = False) -> SweepReport | None:
        """Relay the outbox; sweep when the interval has passed (or ``force``). Returns the
        sweep's report, or None when no sweep ran here (not due, or another worker sweeps)."""
        report = None
        try:
            await self.relay.relay(now_ms)
            if force or self._next_sweep_ms is None or now_ms >= self._next_sweep_ms:
                self._next_sweep_ms = now_ms + self.interval_ms
                report = await self._sweep_exclusive(now_ms)
                await self.relay.relay(now_ms)
        except (StoreError, LedgerError) as exc:
            log.error("collection sweep or relay failed", extra={"fields": {"why": repr(exc)}})
        except Exception as exc:
            # A bug met on one case must not stop the worker's loop: said loudly, retried on
            # the next interval.
            log.exception("collection sweep failed", extra={"fields": {"why": repr(exc)}})
        return report

    async def _sweep_exclusive(self, now_ms: int) -> SweepReport | None:
        database = self.collector.ledger.database
        async with database.connection() as conn:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (SWEEP_LOCK_ID,))
            row = await cursor.fetchone()
            if row is None or not row["got"]:
                return None
            try:
                report = await self.collector.sweep(now_ms)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK_ID,))
        if report.opened or report.retried or report.exhausted or report.expired:
            log.info("collection swept", extra={"fields": report.counts()})
        return report


def collection_timer(
    ledger: Ledger,
    processors: ProcessorRegistry,
    store: Store,
    webhook_config: WebhookConfig,
    config: CollectionConfig,
    *,
    interval_ms: int = SWEEP_INTERVAL_MS_DEFAULT,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> CollectionTimer:
    """The timer of one worker: its collector relays right after each commit, and the tick
    relays whatever a crash left."""
    relay = Relay(ledger.database, store, webhook_config)
    return CollectionTimer(
        Collector(ledger, processors, config, relay, on_checkpoint), relay, interval_ms=interval_ms
    )
