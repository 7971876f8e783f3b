"""Rooms: each model's ordered, bounded, resumable event stream, and the relay that feeds it.

Theory of operation. A room's keys carry the room's hash tag, a tab's keys the customer's, and
no script touches two tags (that is what lets every script run unchanged on Redis Cluster). So
an event caused by spending — a tip — reaches its room in two steps:

1. ``apply_tips.lua`` (customer's tag) applies the tip and, in the same atomic step, queues
   the event in the customer's *outbox* stream under a unique event key (``tip:C:ID``).
2. ``relay_room_events.lua`` (room's tag) appends the event to the room's stream, credits the
   model's live earnings and announces it on the room's sharded pub/sub channel — unless that
   event key was relayed before. Then the outbox entry is deleted.

Step 2 is idempotent by event key, so it may run any number of times: right after the tip (the
normal path), again after a crash between relaying and deleting, or from
:meth:`Rooms.relay_pending`, which drains what a crashed process left in a customer's outbox.
A process also keeps a note of the customers whose outbox it may have left an event in (a relay
that failed, a tip whose answer was lost, a retry answered ``duplicate``) and relays them
itself with :meth:`Rooms.relay_owed`, so no event waits for a settlement worker's sweeper.
An event is never lost and never appears twice; it may appear late, and carries its own ``at``
time.

The stream's entry ids are the cursors clients resume from. The stream keeps about
``room_events_max`` events; a cursor older than the oldest kept event reads with ``gap=True``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack
from redis.exceptions import ResponseError

from metering import keys, scripts
from metering.batch import COALESCED, Batching, Coalescer
from metering.clock import Clock
from metering.errors import StoreUnavailable
from metering.keys import check_id
from metering.limits import Limits
from metering.money import BP_ONE
from metering.outcomes import RoomEventDraft
from metering.store import Store, as_int, as_text, stream_entries, translated

log = logging.getLogger("tipmeter.rooms")

#: How long a room's payout rate is cached in-process before it is read again.
PAYOUT_CACHE_TTL_MS: Final = 5_000
#: Rooms whose payout rate one process caches at most.
PAYOUT_CACHE_ROOMS_MAX: Final = 100_000
#: Events one read returns at most.
READ_COUNT_MAX: Final = 1_000
#: Outbox entries one :meth:`Rooms.relay_pending` call drains at most.
PENDING_COUNT_MAX: Final = 1_000
#: Customers one process remembers to relay for (:meth:`Rooms.owe`); past it, the settlement
#: worker's sweeper relays the rest.
OWED_CUSTOMERS_MAX: Final = 100_000
#: Customers one :meth:`Rooms.relay_owed` call relays for at most.
OWED_PER_CALL_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One event of a room's stream: its id (the resume cursor), type and decoded fields.

    ``earned_total_minor`` is the model's earnings in the event's currency right after it
    (0 for events that earn nothing).
    """

    event_id: str
    event_type: str
    data: dict[str, Any]
    earned_total_minor: int = 0


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events after a cursor, oldest first. ``gap`` is True when events between the cursor and
    the first event returned may have been trimmed away (the client missed them for good)."""

    events: list[RoomEvent]
    gap: bool = False


def parse_stream_id(stream_id: str) -> tuple[int, int]:
    """Split a Redis stream id ``"<ms>-<seq>"`` into integers; raise ValueError if malformed."""
    ms, _, seq = stream_id.partition("-")
    if not ms.isdigit() or not (seq == "" or seq.isdigit()):
        raise ValueError(f"not a stream id: {stream_id!r}")
    return int(ms), int(seq or 0)


def decode_event(
    event_id: str, event_type: str, packed: bytes, earned_total_minor: int = 0
) -> RoomEvent:
    """Decode one event as the scripts pack it."""
    data = msgpack.unpackb(packed, raw=False)
    if not isinstance(data, dict):
        raise ValueError(f"event {event_id} holds {type(data).__name__}, not a map")
    return RoomEvent(event_id, event_type, data, earned_total_minor)


def decode_announcement(message: bytes) -> RoomEvent:
    """Decode a room channel message: msgpack ``[stream_id, type, data, earned_total]``.

    Lua's cmsgpack packs every string as a msgpack *str*, binary ones too, so the message is
    unpacked raw and only the text fields are decoded: ``data`` is itself msgpack, not UTF-8.
    """
    raw = msgpack.unpackb(message, raw=True)
    if not (isinstance(raw, list) and len(raw) == 4):
        raise ValueError("a room announcement is [id, type, data, earned_total]")
    event_id, event_type, data, total = raw
    return decode_event(event_id.decode(), event_type.decode(), bytes(data), int(total))


def _entry_event(entry_id: str, fields: dict[str, bytes]) -> RoomEvent:
    return decode_event(entry_id, fields["t"].decode(), fields["d"], int(fields.get("e", b"0")))


class Rooms:
    """Relays events into rooms and reads them back."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        limits: Limits,
        batching: Batching = COALESCED,
    ) -> None:
        self._store = store
        self._clock = clock
        self._limits = limits
        self._payout_cache: dict[str, tuple[int, int]] = {}
        #: Customers whose outbox this process may have left an event in (insertion-ordered).
        self._owed: dict[str, None] = {}
        self._coalescer: Coalescer[RoomEventDraft, str | None] | None = batching.coalescer(
            self._relay_batch, "relay_room_events"
        )

    async def relay(self, event: RoomEventDraft) -> str | None:
        """Relay one event into its room; its stream id, or None if it was relayed before."""
        if self._coalescer is not None:
            return await self._coalescer.submit(event)
        return (await self._relay_batch([event]))[0]

    def relay_soon(self, event: RoomEventDraft) -> None:
        """Relay ``event`` with the next flush, without waiting for it.

        For the hot path: the tip is already acknowledged. Should this relay fail (Redis
        unreachable), the event stays in the customer's outbox and the customer is owed a relay
        (:meth:`relay_owed`).
        """

        def report(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.warning(
                    "relay failed; the event waits in the outbox",
                    extra={"fields": {"error": repr(future.exception())}},
                )
                self.owe(event.customer)

        if self._coalescer is None:
            asyncio.ensure_future(self._relay_batch([event])).add_done_callback(report)
            return
        try:
            self._coalescer.enqueue(event).add_done_callback(report)
        except StoreUnavailable:
            log.warning("relay queue full; the event waits in the outbox")
            self.owe(event.customer)

    def owe(self, customer: str) -> None:
        """Note that ``customer``'s outbox may hold an event this process left behind (a relay
        that failed, a tip answered ``unavailable`` that may have applied, a retry answered
        ``duplicate``): :meth:`relay_owed` relays it."""
        if customer in self._owed:
            return
        if len(self._owed) >= OWED_CUSTOMERS_MAX:
            log.warning("too many outboxes owed a relay; the sweeper relays the rest")
            return
        self._owed[customer] = None

    @property
    def owed(self) -> int:
        """How many customers are owed a relay."""
        return len(self._owed)

    async def relay_owed(self) -> int:
        """Relay the outboxes of customers owed a relay (at most OWED_PER_CALL_MAX of them);
        return how many entries were relayed. On a Redis error they stay owed."""
        customers = list(self._owed)[:OWED_PER_CALL_MAX]
        if not customers:
            return 0
        relayed = await self.relay_pending_many(customers)
        for customer in customers:
            self._owed.pop(customer, None)
        return relayed

    async def _relay_batch(self, events: Sequence[RoomEventDraft]) -> list[str | None]:
        ids = await scripts.relay_room_events(
            self._store, events, now_ms=self._clock.now_ms(), limits=self._limits
        )
        # Only now may the outbox entries go: a crash before this line leaves them for
        # relay_pending, which relays them again harmlessly.
        await scripts.ack_outbox(self._store, events)
        return ids

    async def relay_pending(self, customer: str) -> int:
        """Relay what waits in ``customer``'s outbox (what a crashed process left, or the
        events of sessions); return how many entries were relayed.

        Safe at any time and from any process: relaying is idempotent by event key.
        """
        return await self.relay_pending_many([customer])

    async def relay_pending_many(self, customers: Sequence[str]) -> int:
        """:meth:`relay_pending` for many customers in three round trips in all."""
        for customer in customers:
            check_id("customer", customer)
        with translated():
            async with self._store.client.pipeline(transaction=False) as pipe:
                for customer in customers:
                    pipe.xrange(keys.outbox(customer), count=PENDING_COUNT_MAX)
                replies = await pipe.execute()
        drafts = [
            RoomEventDraft(
                customer=customer,
                room=fields["r"].decode(),
                event_key=fields["k"].decode(),
                event_type=fields["t"].decode(),
                data=fields["d"],
                currency=fields["cur"].decode(),
                earned_minor=int(fields["earn"]),
                outbox_id=entry_id,
            )
            for customer, reply in zip(customers, replies, strict=True)
            for entry_id, fields in stream_entries(reply)
        ]
        if drafts:
            await self._relay_batch(drafts)
        return len(drafts)

    async def read(self, room: str, after: str | None = None, count: int = 100) -> EventPage:
        """Return up to ``count`` events of ``room`` after the cursor ``after`` (exclusive).

        ``after=None`` reads from the oldest event kept. Raises ValueError for a malformed
        cursor.
        """
        check_id("room", room)
        count = max(1, min(count, READ_COUNT_MAX))
        key = keys.room_events(room)
        start = "-" if after is None else f"({after}"
        if after is not None:
            parse_stream_id(after)
        with translated():
            reply = await self._store.client.xrange(key, min=start, count=count)
            gap = after is not None and await self._trimmed_after(key, after)
        return EventPage(events=[_entry_event(i, f) for i, f in stream_entries(reply)], gap=gap)

    async def _trimmed_after(self, key: str, after: str) -> bool:
        """Tell whether events newer than ``after`` may have been trimmed from the stream.

        Trimming removes the oldest entries, so events after the cursor can only be gone if the
        stream was ever trimmed and its oldest kept entry is newer than the cursor. When the
        cursor was itself the last entry trimmed this answers True though nothing was missed:
        a gap is reported conservatively, never hidden.
        """
        try:
            info: dict[Any, Any] = await self._store.client.xinfo_stream(key)
        except ResponseError:  # no such stream yet: nothing was ever trimmed
            return False
        added = as_int(info.get("entries-added", 0))
        if added <= as_int(info.get("length", 0)):
            return False
        first = info.get("recorded-first-entry-id")
        if not first:
            return True
        return parse_stream_id(after) < parse_stream_id(as_text(first))

    async def latest_id(self, room: str) -> str | None:
        """Return the id of ``room``'s newest event, or None if it has none."""
        check_id("room", room)
        with translated():
            entries = stream_entries(
                await self._store.client.xrevrange(keys.room_events(room), count=1)
            )
        return entries[0][0] if entries else None

    async def payout_bp(self, room: str) -> int:
        """The share of each tip that goes to ``room``'s model, in basis points (cached)."""
        now_ms = self._clock.now_ms()
        cached = self._payout_cache.get(room)
        if cached is not None and cached[1] > now_ms:
            return cached[0]
        with translated():
            raw = await self._store.client.hget(keys.room_profile(room), "payout_bp")
        bp = int(raw) if raw is not None else self._limits.payout_bp_default
        if len(self._payout_cache) >= PAYOUT_CACHE_ROOMS_MAX:
            self._payout_cache.clear()
        self._payout_cache[room] = (bp, now_ms + PAYOUT_CACHE_TTL_MS)
        return bp

    async def set_payout_bp(self, room: str, payout_bp: int) -> None:
        """Set ``room``'s payout rate (basis points, 0..10000). Applies to later tips only."""
        check_id("room", room)
        if type(payout_bp) is not int or not (0 <= payout_bp <= BP_ONE):
            raise ValueError(f"payout_bp must be an integer in 0..{BP_ONE}")
        with translated():
            await self._store.client.hset(keys.room_profile(room), "payout_bp", payout_bp)
        self._payout_cache.pop(room, None)

    async def earnings(self, room: str) -> dict[str, int]:
        """``room``'s model earnings so far, by field (``accrued:USD`` …), in minor units."""
        check_id("room", room)
        with translated():
            raw = await self._store.client.hgetall(keys.room_earnings(room))
        return {as_text(k): as_int(v) for k, v in raw.items()}

    async def aclose(self) -> None:
        """Wait for queued relays to finish."""
        if self._coalescer is not None:
            await self._coalescer.aclose()
