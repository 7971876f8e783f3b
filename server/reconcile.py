"""``tipmeter reconcile``: connect to the ledger, Redis and the processor the settings name,
then compare them (:mod:`settlement.ledger.reconcile`)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from metering.clock import SystemClock
from metering.meter import CORE_SCRIPTS, open_store
from server.config import Settings
from server.errors import ConfigError
from settlement.ledger.ledger import Ledger
from settlement.ledger.reconcile import ReconcileReport, reconcile


def parse_instant(raw: str) -> datetime:
    """An ISO 8601 date or date-time; UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an ISO 8601 date or date-time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def run_reconcile(settings: Settings, since: datetime, until: datetime) -> ReconcileReport:
    """Reconcile ``[since, until)`` with the stores and processor of ``settings``.

    The embedded default's Redis and PostgreSQL belong to a running ``tipmeter serve``: set
    ``TIPMETER_REDIS_URL`` and ``TIPMETER_DATABASE_URL`` to reconcile them.
    """
    if settings.embedded_redis or settings.embedded_postgres:
        raise ConfigError(
            "tipmeter reconcile needs TIPMETER_REDIS_URL (or TIPMETER_REDIS_CLUSTER_NODES) and "
            "TIPMETER_DATABASE_URL"
        )
    async with contextlib.AsyncExitStack() as stack:
        ledger = await Ledger.open(settings.database_config())
        stack.push_async_callback(ledger.close)
        store = await open_store(settings.redis_target(), CORE_SCRIPTS)
        stack.push_async_callback(store.close)
        # In-process sandboxes are read from their journal in the data folder (stop the server
        # that keeps it first: a journal is locked to one process).
        processors = settings.processor_registry(SystemClock(), durable=True)
        stack.callback(processors.close)
        return await reconcile(ledger, store, processors.gateways(), since, until)
