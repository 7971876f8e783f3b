"""Running a worker as its own process (``tipmeter worker``), from the server's settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metering.clock import SystemClock
from metering.meter import Meter, open_store
from metering.scripts import METERING_SCRIPTS
from settlement.collection.timer import collection_timer
from settlement.config import Checkpoint
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.receipts import Receipts
from settlement.scripts import SETTLEMENT_SCRIPTS
from settlement.worker import Worker

if TYPE_CHECKING:
    from server.config import Settings

log = logging.getLogger("tipmeter.worker")


def settings_worker(
    settings: Settings,
    meter: Meter,
    processors: ProcessorRegistry,
    ledger: Ledger,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> Worker:
    """A worker tuned by ``settings``, on the process's meter, processors and ledger (the
    ``tipmeter worker`` process's, or the server's when it settles in its own process)."""
    worker = Worker(
        meter,
        processors,
        ledger=ledger,
        config=settings.settlement_config(),
        webhook_config=settings.webhook_config(),
        on_checkpoint=on_checkpoint,
        collection=collection_timer(
            ledger,
            processors,
            meter.store,
            settings.webhook_config(),
            settings.collection_config(),
            interval_ms=settings.collection_sweep_interval_ms,
            on_checkpoint=on_checkpoint,
        ),
    )
    worker.renewals.notify_with(settings.notifier())  # member notices (subscriptions)
    worker.receipts = Receipts(ledger.database, settings.notifier())  # docs/invoices.md
    return worker


async def run_worker(
    settings: Settings,
    *,
    burst: bool = False,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> dict[str, Any] | None:
    """Connect, then settle until SIGINT/SIGTERM; with ``burst``, drain once and return a
    report (statuses counted, entries acknowledged, left pending, dead-lettered).
    ``on_checkpoint``: the worker's checkpoint hook (the crash tests' entry point passes one)."""
    clock = SystemClock()
    ledger = await Ledger.open(settings.database_config())
    store = await open_store(settings.redis_target(), (*METERING_SCRIPTS, *SETTLEMENT_SCRIPTS))
    meter = Meter(store, clock=clock, limits=settings.limits())
    processors = settings.processor_registry(clock)
    try:
        worker = settings_worker(settings, meter, processors, ledger, on_checkpoint)
        if burst:
            report = await worker.run_burst()
            return {
                "statuses": dict(report.statuses),
                "acked": report.acked,
                "left_pending": report.left_pending,
                "dead_lettered": report.dead_lettered,
            }
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("settlement worker running", extra={"fields": {"consumer": worker.consumer}})
        await worker.run(stop)
        log.info("settlement worker stopped")
        return None
    finally:
        await meter.aclose()
        await store.close()
        await ledger.close()
        processors.close()
