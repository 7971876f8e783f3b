"""Prometheus metrics, on a registry of the app's own (so several apps can share a process).

Every label takes values from a fixed set (message types, error codes, currencies, roles), so
the number of time series is bounded.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Round trips to Redis, in seconds: from 100 µs to 2.5 s.
REDIS_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
)
#: Items carried by one flush.
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """Every metric the server exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "tipmeter_connections", "Open WebSocket connections.", ["role"], registry=r
        )
        self.handshakes_refused = Counter(
            "tipmeter_handshakes_refused_total",
            "WebSocket handshakes refused, by reason.",
            ["code"],
            registry=r,
        )
        self.messages_in = Counter(
            "tipmeter_messages_received_total", "Client messages, by type.", ["type"], registry=r
        )
        self.messages_out = Counter(
            "tipmeter_messages_sent_total", "Server messages queued, by type.", ["type"], registry=r
        )
        self.tips = Counter("tipmeter_tips_total", "Tips, by outcome.", ["outcome"], registry=r)
        self.tipped_minor = Counter(
            "tipmeter_tipped_minor_total",
            "Minor units of applied tips, by currency.",
            ["currency"],
            registry=r,
        )
        self.errors = Counter(
            "tipmeter_errors_total", "Error replies, by code.", ["code"], registry=r
        )
        self.redis_seconds = Histogram(
            "tipmeter_redis_seconds",
            "Duration of one batched round trip to Redis, by operation.",
            ["operation"],
            buckets=REDIS_BUCKETS_S,
            registry=r,
        )
        self.batch_items = Histogram(
            "tipmeter_redis_batch_items",
            "Items carried by one batched round trip, by operation.",
            ["operation"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.slow_consumers = Counter(
            "tipmeter_slow_consumers_total",
            "Connections dropped because they read too slowly.",
            registry=r,
        )
        self.events_delivered = Counter(
            "tipmeter_events_delivered_total",
            "Room events queued to connections (one per connection).",
            registry=r,
        )
        self.sessions = Gauge(
            "tipmeter_sessions", "Metered sessions this process bills.", registry=r
        )
        self.sessions_ended = Counter(
            "tipmeter_sessions_ended_total", "Sessions ended, by reason.", ["reason"], registry=r
        )
        self.tick_lag = Histogram(
            "tipmeter_tick_lag_seconds",
            "How late the billing tick started.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.tick_seconds = Histogram(
            "tipmeter_tick_seconds",
            "How long one billing tick took (all sessions).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.http_requests = Counter(
            "tipmeter_http_requests_total",
            "HTTP API requests, by route and status.",
            ["route", "status"],
            registry=r,
        )

        # Labelled children, looked up once: `labels()` validates and locks on every call, and
        # these are counted on every message.
        self._children: dict[tuple[str, str], Any] = {}

    def _child(self, metric: Counter, label: str) -> Any:
        key = (metric._name, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def count_in(self, kind: str) -> None:
        """A client message of ``kind`` arrived."""
        self._child(self.messages_in, kind).inc()

    def count_out(self, kind: str) -> None:
        """A server message of ``kind`` was queued."""
        self._child(self.messages_out, kind).inc()

    def count_tip(self, outcome: str, currency: str, amount_minor: int) -> None:
        """A tip was answered; those applied now add their amount."""
        self._child(self.tips, outcome).inc()
        if outcome == "applied":
            self._child(self.tipped_minor, currency).inc(amount_minor)

    def count_error(self, code: str) -> None:
        """An error reply with ``code`` was sent."""
        self._child(self.errors, code).inc()

    def observe_flush(self, operation: str, items: int, seconds: float) -> None:
        """Record one batched Redis round trip (the money core's observer hook)."""
        self.redis_seconds.labels(operation).observe(seconds)
        self.batch_items.labels(operation).observe(items)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)
