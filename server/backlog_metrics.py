"""Gauges of what waits in Redis — the settlement queue, dead letters, the webhook backlog —
read at each scrape of ``/metrics`` (four O(1) reads), so Prometheus alerts on them
(ops/prometheus/tipmeter-rules.yml) whichever process it scrapes: the streams are shared.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge

from metering import keys
from metering.store import Store


class BacklogGauges:
    """The gauges, registered in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.settlement_queue = Gauge(
            "tipmeter_settlement_queue_entries",
            "Entries on the settlement stream (queued, not yet settled and deleted).",
            registry=registry,
        )
        self.settlement_dead = Gauge(
            "tipmeter_settlement_dead_letters",
            "Settlement entries given up on (tm:{settle}:dead), waiting for an operator.",
            registry=registry,
        )
        self.webhook_backlog = Gauge(
            "tipmeter_webhook_backlog",
            "Webhook events waiting for delivery to the cam site.",
            registry=registry,
        )
        self.webhook_oldest_due = Gauge(
            "tipmeter_webhook_oldest_due_seconds",
            "Age of the most overdue waiting webhook event (0 when none is due).",
            registry=registry,
        )
        self.webhook_dead = Gauge(
            "tipmeter_webhook_dead_letters",
            "Webhook events given up on (tm:{hooks}:dead).",
            registry=registry,
        )

    async def refresh(self, store: Store, now_ms: int | None = None) -> None:
        """Read the lengths from Redis into the gauges."""
        client = store.client
        now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        self.settlement_queue.set(await client.xlen(keys.settle_queue()))
        self.settlement_dead.set(await client.xlen(keys.settle_dead_letters()))
        self.webhook_backlog.set(await client.zcard(keys.webhook_due()))
        self.webhook_dead.set(await client.xlen(keys.webhook_dead_letters()))
        oldest = await client.zrange(keys.webhook_due(), 0, 0, withscores=True)
        due_ms = int(oldest[0][1]) if oldest else now
        self.webhook_oldest_due.set(max(0, now - due_ms) / 1_000)
