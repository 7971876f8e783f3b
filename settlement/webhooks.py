"""Signed webhooks to the cam site: ``tab.settled`` and ``tab.settlement_failed``.

Theory of operation. When the worker has recorded a tab's outcome it queues one event
(``enqueue_webhook.lua``, idempotent by event id, so a worker that crashes and settles the tab
again queues nothing new). A deliverer — part of every worker's loop — leases the due events
(``claim_webhooks.lua``), POSTs each to the cam site's URL, and records the attempt
(``finish_webhook.lua``): delivered (any 2xx), retried later with exponential backoff, or after
:attr:`WebhookConfig.attempts_max` attempts moved to a dead-letter stream for an operator. The
event id is derived from the tab and the event type, so it is unique per event and the same on
every retry: receivers dedupe by it (a delivery whose reply was lost is sent again).

Signature. Each delivery carries ``Tipmeter-Signature: t=<unix seconds>,v1=<hex>``, where the
hex is HMAC-SHA256, keyed with the shared secret, of ``<t>.<body>`` (the timestamp, a dot, and
the raw body bytes) — the scheme Stripe uses, so integrators know it. A receiver recomputes it
over the raw body, compares in constant time, and refuses a timestamp older (or newer) than its
replay window (:data:`REPLAY_WINDOW_S_DEFAULT`, five minutes): a captured delivery cannot be
replayed later. :func:`verify_signature` does exactly that and is what the docs give
integrators.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from metering.clock import Clock
from metering.store import Store
from settlement import http, scripts
from settlement.errors import InvalidSignature
from settlement.ledger.deliveries import Delivery
from settlement.outcomes import SettleCode

log = logging.getLogger("tipmeter.webhooks")

SIGNATURE_HEADER: Final = "Tipmeter-Signature"
#: How far a delivery's timestamp may be from the receiver's clock, in seconds.
REPLAY_WINDOW_S_DEFAULT: Final = 300
SCHEME: Final = "v1"
#: A header's timestamp: Unix seconds in ASCII digits.
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")

TAB_SETTLED: Final = "tab.settled"
TAB_SETTLEMENT_FAILED: Final = "tab.settlement_failed"


def sign(body: bytes, secret: str, timestamp_s: int) -> str:
    """The ``Tipmeter-Signature`` header value for ``body`` sent at ``timestamp_s``."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},{SCHEME}={mac.hexdigest()}"


def verify_signature(
    body: bytes,
    header: str,
    secret: str,
    *,
    now_s: int,
    window_s: int = REPLAY_WINDOW_S_DEFAULT,
) -> None:
    """Check a delivery's ``Tipmeter-Signature`` header; raise InvalidSignature if it fails.

    ``body`` is the raw request body, exactly as received (not re-serialised JSON). ``now_s``
    is the receiver's clock in Unix seconds (``int(time.time())``). Any ``v1`` signature in the
    header may match, so a secret can be rotated by signing with both for a while. Spaces
    around the comma-separated parts are ignored. Never raises anything but InvalidSignature,
    whatever the header.
    """
    fields = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for name, _, value in fields if name == "t"]
    signatures = [value.encode() for name, _, value in fields if name == SCHEME and value]
    # Exactly one timestamp of ASCII digits (str.isdigit would pass "²", which int() refuses).
    if len(stamps) != 1 or _TIMESTAMP.fullmatch(stamps[0]) is None or not signatures:
        raise InvalidSignature("malformed signature header: one t=<seconds> and a v1= needed")
    timestamp = int(stamps[0])
    if abs(now_s - timestamp) > window_s:
        raise InvalidSignature(f"timestamp outside the {window_s} s replay window")
    # Compared as bytes: compare_digest raises on a str that is not ASCII.
    expected = sign(body, secret, timestamp).rpartition("=")[2].encode()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise InvalidSignature("signature does not match the body")


def event_id(event_type: str, settlement_id: str) -> str:
    """The id of the one event of ``event_type`` for a settlement: unique, stable on retries."""
    digest = hashlib.sha256(f"{event_type}:{settlement_id}".encode()).hexdigest()[:32]
    return f"evt_{digest}"


def event_body(
    event_type: str, settlement_id: str, created_ms: int, data: Mapping[str, Any]
) -> bytes:
    """The JSON body of an event: ``id``, ``type``, ``created`` (Unix ms) and ``data``."""
    return orjson.dumps(
        {
            "id": event_id(event_type, settlement_id),
            "type": event_type,
            "created": created_ms,
            "data": dict(data),
        },
        option=orjson.OPT_SORT_KEYS,
    )


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where and how events are delivered. ``url=None`` turns webhooks off."""

    url: str | None = None
    secret: str = ""
    #: Attempts per event before it is dead-lettered (the first one included).
    attempts_max: int = 10
    #: Backoff before attempt n+1: base × 2^(n-1), at most backoff_max_ms.
    backoff_base_ms: int = 1_000
    backoff_max_ms: int = 3_600_000
    #: How long a claimed event is reserved for one deliverer (longer than timeout_s).
    lease_ms: int = 30_000
    timeout_s: float = 10.0
    #: Events waiting for delivery at most; past it new events wait in the settlement queue.
    events_max: int = 100_000
    #: Events one delivery round takes at most.
    batch_max: int = 32
    #: How long, and how many, delivered event ids are remembered to refuse a second queueing.
    sent_window_ms: int = 7 * 24 * 3_600_000
    sent_max: int = 1_000_000
    dead_max: int = 100_000

    @property
    def enabled(self) -> bool:
        """True when a URL is configured."""
        return self.url is not None

    def backoff_ms(self, attempts: int) -> int:
        """The wait after ``attempts`` failed attempts (exponential, capped)."""
        return int(min(self.backoff_base_ms * 2 ** max(attempts - 1, 0), self.backoff_max_ms))


async def enqueue(
    store: Store,
    config: WebhookConfig,
    event_type: str,
    settlement_id: str,
    data: Mapping[str, Any],
    now_ms: int,
) -> SettleCode:
    """Queue the event (once per id): applied, duplicate, or busy (retry later)."""
    body = event_body(event_type, settlement_id, now_ms, data)
    return await scripts.enqueue_webhook(
        store,
        event_id=event_id(event_type, settlement_id),
        body=body,
        now_ms=now_ms,
        events_max=config.events_max,
    )


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one delivery round did."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0

    @property
    def attempts(self) -> int:
        """Deliveries attempted in the round."""
        return self.delivered + self.retried + self.dead


class Deliverer:
    """Delivers due webhook events, signing each attempt with the time it is sent."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: WebhookConfig,
        *,
        on_delivered: Callable[[Delivery], Awaitable[object]] | None = None,
    ) -> None:
        if config.url is None:
            raise ValueError("webhooks are off: no URL configured")
        self._on_delivered = on_delivered
        self._store = store
        self._clock = clock
        self._config = config
        self._url = config.url

    async def deliver_due(self) -> DeliveryReport:
        """Deliver every event due now (at most ``batch_max``); record each attempt."""
        config = self._config
        claimed = await scripts.claim_webhooks(
            self._store,
            now_ms=self._clock.now_ms(),
            lease_ms=config.lease_ms,
            count_max=config.batch_max,
        )
        delivered = retried = dead = 0
        # The claimed events are posted concurrently (at most batch_max at once), so one slow
        # receiver costs one timeout per round, not one per event.
        failures = await asyncio.gather(*(self._post(event.body) for event in claimed))
        for event, failure in zip(claimed, failures, strict=True):
            now_ms = self._clock.now_ms()
            attempts = event.attempts + 1
            last = attempts >= config.attempts_max
            next_ms = 0 if failure is None or last else now_ms + config.backoff_ms(attempts)
            await scripts.finish_webhook(
                self._store,
                event_id=event.event_id,
                delivered=failure is None,
                now_ms=now_ms,
                next_attempt_ms=next_ms,
                sent_window_ms=config.sent_window_ms,
                sent_max=config.sent_max,
                dead_max=config.dead_max,
                failure=failure or "",
            )
            if failure is None:
                delivered += 1
                if self._on_delivered is not None:
                    await self._on_delivered(
                        _delivery(event.event_id, event.body, attempts, now_ms)
                    )
            elif last:
                dead += 1
                log.error(
                    "webhook dead-lettered",
                    extra={"fields": {"event_id": event.event_id, "failure": failure}},
                )
            else:
                retried += 1
        return DeliveryReport(delivered, retried, dead)

    async def _post(self, body: bytes) -> str | None:
        """POST one event; None when the receiver took it (2xx), else what went wrong."""
        timestamp_s = self._clock.now_ms() // 1_000
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._config.secret, timestamp_s),
            "User-Agent": "tipmeter-webhooks/1",
        }
        try:
            reply = await http.request(
                "POST", self._url, body=body, headers=headers, timeout_s=self._config.timeout_s
            )
        except http.HttpFailure as exc:
            return str(exc)
        if 200 <= reply.status < 300:
            return None
        return f"HTTP {reply.status}"


def _delivery(event_id: str, body: bytes, attempts: int, now_ms: int) -> Delivery:
    """The ledger's record of a delivered event (its type and subject read from its body)."""
    event: dict[str, Any] = orjson.loads(body)
    data = event.get("data") or {}
    subject = f"{data.get('customer', '')}/{data.get('tab_id', '')}"
    return Delivery(event_id, str(event.get("type", "")), subject, attempts, now_ms)
