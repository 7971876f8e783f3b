"""Prometheus metrics, on a registry of the app's own (so several apps can share a process).

Every label takes values from a fixed set (message types, error codes, currencies, roles), so
the number of time series is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

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


class Tally(Collector):
    """A counter with one label for the hot path: a plain dict of integers, read only when
    scraped. prometheus_client's Counter takes a lock on every increment; these are counted
    several times per tip, by the event loop's one thread."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.counts: dict[str, int] = {}

    def add(self, value: str, amount: int = 1) -> None:
        """Count ``amount`` for the label value ``value``."""
        counts = self.counts
        counts[value] = counts.get(value, 0) + amount

    def collect(self) -> Iterator[Metric]:
        """The counter family, as of now."""
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self.counts.items()):
            family.add_metric([value], count)
        yield family


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
        self.messages_in = Tally("tipmeter_messages_received", "Client messages, by type.", "type")
        self.messages_out = Tally(
            "tipmeter_messages_sent", "Server messages queued, by type.", "type"
        )
        self.tips = Tally("tipmeter_tips", "Tips, by outcome.", "outcome")
        self.tipped_minor = Tally(
            "tipmeter_tipped_minor", "Minor units of applied tips, by currency.", "currency"
        )
        self.errors = Tally("tipmeter_errors", "Error replies, by code.", "code")
        for tally in (
            self.messages_in,
            self.messages_out,
            self.tips,
            self.tipped_minor,
            self.errors,
        ):
            r.register(tally)
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

    def count_in(self, kind: str) -> None:
        """A client message of ``kind`` arrived."""
        self.messages_in.add(kind)

    def count_out(self, kind: str) -> None:
        """A server message of ``kind`` was queued."""
        self.messages_out.add(kind)

    def count_tip(self, outcome: str, currency: str, amount_minor: int) -> None:
        """A tip was answered; those applied now add their amount."""
        self.tips.add(outcome)
        if outcome == "applied":
            self.tipped_minor.add(currency, amount_minor)

    def count_error(self, code: str) -> None:
        """An error reply with ``code`` was sent."""
        self.errors.add(code)

    def observe_flush(self, operation: str, items: int, seconds: float) -> None:
        """Record one batched Redis round trip (the money core's observer hook)."""
        self.redis_seconds.labels(operation).observe(seconds)
        self.batch_items.labels(operation).observe(items)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)
