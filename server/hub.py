"""Fan-out: room events and tab balances from Redis to this process's connections.

Theory of operation. The scripts announce every room event on the room's sharded channel
(``tm:{r:R}:live``) and every tab balance on the customer's (``tm:{c:C}:live``), in the same
atomic step that makes the change. This process subscribes to the channels of the rooms and
customers it has connections for — one :class:`ChannelListener` (one Redis connection) per
Redis node, since a shard channel lives on the node of its slot — and hands each message to the
connections that follow it, encoded once per audience and codec.

Pub/sub delivers at most once: a message published while a listener is reconnecting is lost.
Room streams make that harmless. Each connection keeps a cursor per room (the id of the last
event it got); joining a room, and every reconnect of a listener, *catches up* from the stream
(``XRANGE`` after the cursor) while live messages for that connection and room are held back;
then the held-back messages newer than the cursor follow. Every event is delivered in order,
once, with no gap — up to the stream's bound, past which the client is told ``gap``. Tab
balances need no history: after a reconnect each viewer is sent its tab's current balance,
and versions drop anything stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import msgpack
from redis.asyncio.cluster import RedisCluster

from clients.protocol import TabView
from metering import keys, rooms
from metering.devices import record_devices
from metering.errors import StoreError, StoreUnavailable
from metering.meter import Meter
from metering.outcomes import Balance, TabRef
from metering.store import RedisTarget, translated
from server.connection import CATCH_UP_BUFFER_MAX, Connection
from server.events import LiveEvent
from server.metrics import Metrics
from server.pubsub import Endpoint, PubSubError, PushConnection

log = logging.getLogger("tipmeter.hub")

#: How long a subscription may take to be confirmed before the join fails.
SUBSCRIBE_TIMEOUT_S: Final = 5.0
#: Backoff between reconnects of a listener (doubling, with jitter).
RECONNECT_BACKOFF_S_MIN: Final = 0.05
RECONNECT_BACKOFF_S_MAX: Final = 5.0
#: Events one catch-up reads per round trip, and at most in all; past that: a gap.
CATCH_UP_PAGE_EVENTS: Final = 500
CATCH_UP_EVENTS_MAX: Final = 5_000

OnMessage = Callable[[str, bytes], None]
OnResubscribed = Callable[[set[str]], Coroutine[Any, Any, None]]


class ChannelListener:
    """One Redis connection subscribed to the shard channels of one node."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        on_message: OnMessage,
        on_resubscribed: OnResubscribed,
    ) -> None:
        self.name = name
        self._endpoint = endpoint
        self._on_message = on_message
        self._on_resubscribed = on_resubscribed
        self.channels: set[str] = set()
        self._conn: PushConnection | None = None
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._wakeup = asyncio.Event()
        #: Held while subscriptions are sent, so that a channel added while the connection is
        #: being made is either in the first batch or sent after it, never neither.
        self._sending = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the listening task."""
        self._task = asyncio.create_task(self._run(), name=f"listener {self.name}")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel`` and return once Redis confirmed it."""
        if channel in self.channels and channel not in self._confirmations:
            return
        self.channels.add(channel)
        confirmed = self._confirmations.get(channel)
        if confirmed is None:
            confirmed = asyncio.get_running_loop().create_future()
            self._confirmations[channel] = confirmed
            async with self._sending:
                conn = self._conn
                if conn is not None:
                    try:
                        await conn.subscribe([channel])
                    except PubSubError as exc:
                        raise StoreUnavailable(f"could not subscribe {channel}: {exc}") from exc
                else:
                    self._wakeup.set()  # the listener connects and sends it with the rest
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await asyncio.shield(confirmed)
        except TimeoutError:
            raise StoreUnavailable(f"subscribing {channel} was not confirmed") from None

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""
        self.channels.discard(channel)
        pending = self._confirmations.pop(channel, None)
        if pending is not None and not pending.done():
            pending.cancel()
        async with self._sending:
            conn = self._conn
            if conn is not None and channel not in self.channels:
                with contextlib.suppress(PubSubError):
                    await conn.unsubscribe(channel)

    async def _run(self) -> None:
        backoff = RECONNECT_BACKOFF_S_MIN
        lost = False
        while True:
            if not self.channels:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            conn: PushConnection | None = None
            try:
                conn = await PushConnection.open(self._endpoint)
                async with self._sending:
                    awaiting = set(self.channels)
                    for channel in awaiting:
                        self._confirmations.setdefault(
                            channel, asyncio.get_running_loop().create_future()
                        )
                    await conn.subscribe(sorted(awaiting))
                    self._conn = conn
                while True:
                    push = await conn.read()
                    kind = push[0]
                    if kind == b"smessage":
                        self._dispatch(push[1].decode(), push[2])
                    elif kind == b"ssubscribe":
                        channel = push[1].decode()
                        confirmed = self._confirmations.pop(channel, None)
                        if confirmed is not None and not confirmed.done():
                            confirmed.set_result(None)
                        awaiting.discard(channel)
                        if lost and not awaiting:
                            lost = False
                            backoff = RECONNECT_BACKOFF_S_MIN
                            task = asyncio.create_task(self._on_resubscribed(set(self.channels)))
                            self._background.add(task)
                            task.add_done_callback(self._background.discard)
            except PubSubError as exc:
                log.warning(
                    "pub/sub connection lost; reconnecting",
                    extra={"fields": {"node": self.name, "error": str(exc)}},
                )
                lost = True
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, RECONNECT_BACKOFF_S_MAX)
            finally:
                self._conn = None
                if conn is not None:
                    await conn.close()

    def _dispatch(self, channel: str, data: bytes) -> None:
        try:
            self._on_message(channel, data)
        except Exception:  # one bad message must not stop the listener
            log.exception("could not deliver a message", extra={"fields": {"channel": channel}})


class _RoomFeed:
    __slots__ = ("members", "room", "waiters")

    def __init__(self, room: str) -> None:
        self.room = room
        self.members: set[Connection] = set()
        self.waiters: set[asyncio.Event] = set()


class _DeviceLock:
    """Serializes the writes of one customer's device count; kept while anyone uses it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Hub:
    """This process's subscriptions, and delivery to its connections."""

    def __init__(self, meter: Meter, target: RedisTarget, metrics: Metrics, owner: str) -> None:
        self._meter = meter
        self._target = target
        self._metrics = metrics
        #: This process's id in the customers' device counts (metering/devices.py).
        self._owner = owner
        self._device_locks: dict[str, _DeviceLock] = {}
        self._listeners: dict[str, ChannelListener] = {}
        self._rooms: dict[str, _RoomFeed] = {}
        self._customers: dict[str, set[Connection]] = {}
        self._room_of_channel: dict[str, str] = {}
        self._customer_of_channel: dict[str, str] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _soon(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Stop every listener."""
        for listener in self._listeners.values():
            await listener.stop()
        self._listeners.clear()

    # -- listeners --------------------------------------------------------------------------

    def _listener_for(self, channel: str) -> ChannelListener:
        client = self._meter.store.client
        timeout_s = self._target.connect_timeout_s
        if isinstance(client, RedisCluster):
            node = client.get_node_from_key(channel)
            if node is None:
                raise StoreUnavailable(f"no cluster node serves {channel}")
            name = node.name
            endpoint = Endpoint(host=node.host, port=int(node.port), connect_timeout_s=timeout_s)
        else:
            name = "standalone"
            endpoint = Endpoint.from_url(self._target.url or "", connect_timeout_s=timeout_s)
        listener = self._listeners.get(name)
        if listener is None:
            listener = ChannelListener(name, endpoint, self._on_message, self._resync)
            listener.start()
            self._listeners[name] = listener
        return listener

    def _on_message(self, channel: str, data: bytes) -> None:
        room = self._room_of_channel.get(channel)
        if room is not None:
            self._deliver_room_event(room, LiveEvent(room, rooms.decode_announcement(data)))
            return
        customer = self._customer_of_channel.get(channel)
        if customer is not None:
            self._deliver_tab(customer, _decode_tab(data))

    async def _resync(self, channels: set[str]) -> None:
        """After a listener reconnected: catch every follower up on what it may have missed."""
        for channel in channels:
            room = self._room_of_channel.get(channel)
            if room is not None and room in self._rooms:
                await self._catch_up(room, list(self._rooms[room].members))
            customer = self._customer_of_channel.get(channel)
            if customer is not None:
                await self._refresh_tabs(customer)

    # -- customers (viewers' tabs) ------------------------------------------------------------

    async def follow_customer(self, conn: Connection) -> None:
        """Deliver ``conn``'s customer's tab balances to it from now on."""
        customer = conn.subject
        channel = keys.customer_channel(customer)
        members = self._customers.setdefault(customer, set())
        members.add(conn)
        self._customer_of_channel[channel] = customer
        try:
            # Counted before the caller reads the tab for the welcome (see metering/devices.py).
            await self._record_devices(customer)
            await self._listener_for(channel).subscribe(channel)
        except BaseException:
            self.unfollow_customer(conn)
            raise

    def unfollow_customer(self, conn: Connection) -> None:
        """Stop delivering tab balances to ``conn``."""
        customer = conn.subject
        members = self._customers.get(customer)
        if members is None:
            return
        if conn not in members:
            return
        members.discard(conn)
        self._soon(self._record_devices_quietly(customer))
        if not members:
            del self._customers[customer]
            channel = keys.customer_channel(customer)
            self._customer_of_channel.pop(channel, None)
            self._soon(self._listener_for(channel).unsubscribe(channel))

    async def _record_devices(self, customer: str) -> None:
        """Record this process's count of ``customer``'s devices. Writes for one customer are
        serialized and each counts when it runs, so the last one written is the current count
        (a late write of an older, lower count would hide a device from announcements)."""
        entry = self._device_locks.get(customer)
        if entry is None:
            entry = self._device_locks[customer] = _DeviceLock()
        entry.users += 1
        try:
            async with entry.lock:
                count = len(self._customers.get(customer, ()))
                await record_devices(self._meter.store, customer, self._owner, count)
        finally:
            entry.users -= 1
            if not entry.users:  # nobody holds or waits for it: it may go
                del self._device_locks[customer]

    async def _record_devices_quietly(self, customer: str) -> None:
        """:meth:`_record_devices`, logging a failure (a count left too high only costs
        announcements nobody needed)."""
        try:
            await self._record_devices(customer)
        except StoreError as exc:
            log.warning(
                "could not record a customer's devices",
                extra={"fields": {"customer": customer, "why": repr(exc)}},
            )

    def _deliver_tab(self, customer: str, tab: TabView) -> None:
        for conn in self._customers.get(customer, ()):
            if conn.currency == tab.currency:
                conn.offer_tab(tab)

    async def _refresh_tabs(self, customer: str) -> None:
        currencies = {conn.currency for conn in self._customers.get(customer, ())}
        for currency in currencies:
            view = await current_tab(self._meter, customer, currency)
            if view is not None:
                self._deliver_tab(customer, view)

    # -- rooms ------------------------------------------------------------------------------

    async def _acquire_room(self, room: str) -> _RoomFeed:
        """The room's feed, with its channel subscribed (created on first use)."""
        channel = keys.room_channel(room)
        feed = self._rooms.get(room)
        if feed is None:
            feed = self._rooms[room] = _RoomFeed(room)
            self._room_of_channel[channel] = room
        return feed

    def _release_room(self, room: str) -> None:
        """Unsubscribe the room's channel once nothing here follows it any more."""
        feed = self._rooms.get(room)
        if feed is None or feed.members or feed.waiters:
            return
        del self._rooms[room]
        channel = keys.room_channel(room)
        self._room_of_channel.pop(channel, None)
        self._soon(self._listener_for(channel).unsubscribe(channel))

    async def join_room(
        self, conn: Connection, room: str, after: str | None
    ) -> tuple[bool, list[rooms.RoomEvent]]:
        """Start following ``room`` for ``conn`` from the cursor ``after`` (None: from now).

        Returns whether events after the cursor were lost (trimmed from the stream, or more
        than CATCH_UP_EVENTS_MAX behind) and the backlog to hand to :meth:`deliver_backlog`.
        Until then, live events for ``conn`` and ``room`` are held back.
        """
        channel = keys.room_channel(room)
        feed = await self._acquire_room(room)
        feed.members.add(conn)
        conn.buffers[room] = []
        try:
            await self._listener_for(channel).subscribe(channel)
            with translated():
                if after is None:
                    latest = await self._meter.rooms.latest_id(room)
                    conn.cursors[room] = rooms.parse_stream_id(latest) if latest else (0, 0)
                    return False, []
                conn.cursors[room] = rooms.parse_stream_id(after)
                trimmed = (await self._meter.rooms.read(room, after=after, count=1)).gap
                backlog, overflow = await self._read_backlog(room, after)
        except BaseException:
            self.leave_room(conn, room)
            raise
        return trimmed or overflow, backlog

    def deliver_backlog(self, conn: Connection, room: str, backlog: list[rooms.RoomEvent]) -> None:
        """Send ``conn`` the backlog :meth:`join_room` read, then the live events held back."""
        lives = [LiveEvent(room, event) for event in backlog]
        for live in lives:
            self._send_event(conn, live)
        for live in conn.buffers.pop(room, []):
            self._send_event(conn, live)

    def leave_room(self, conn: Connection, room: str) -> None:
        """Stop delivering ``room``'s events to ``conn``."""
        conn.cursors.pop(room, None)
        conn.buffers.pop(room, None)
        feed = self._rooms.get(room)
        if feed is not None:
            feed.members.discard(conn)
            self._release_room(room)

    async def wait_for_event(
        self, room: str, timeout_s: float, ready: Callable[[], Awaitable[bool]]
    ) -> None:
        """Wait until an event lands in ``room`` or ``timeout_s`` passes.

        ``ready`` is asked once the room's channel is subscribed; if it answers True (events
        arrived before the subscription), there is nothing to wait for. This closes the window
        between a caller's last read and its subscription.
        """
        channel = keys.room_channel(room)
        feed = await self._acquire_room(room)
        waiter = asyncio.Event()
        feed.waiters.add(waiter)
        try:
            await self._listener_for(channel).subscribe(channel)
            if await ready():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await waiter.wait()
        finally:
            feed.waiters.discard(waiter)
            self._release_room(room)

    def forget(self, conn: Connection) -> None:
        """Drop every subscription of ``conn`` (it closed)."""
        for room in list(conn.cursors):
            self.leave_room(conn, room)
        if conn.currency:
            self.unfollow_customer(conn)

    async def _read_backlog(self, room: str, after: str) -> tuple[list[rooms.RoomEvent], bool]:
        """The room's events after ``after``, oldest first, at most CATCH_UP_EVENTS_MAX of them
        (the newest); True with them when there were more."""
        events: list[rooms.RoomEvent] = []
        overflow = False
        while True:
            page = await self._meter.rooms.read(room, after=after, count=CATCH_UP_PAGE_EVENTS)
            events.extend(page.events)
            if len(events) > CATCH_UP_EVENTS_MAX:
                del events[: len(events) - CATCH_UP_EVENTS_MAX]
                overflow = True
            if len(page.events) < CATCH_UP_PAGE_EVENTS:
                return events, overflow
            after = page.events[-1].event_id

    async def _catch_up(self, room: str, conns: list[Connection]) -> None:
        """After a listener reconnected: deliver what ``conns`` missed of ``room``, holding
        live events back meanwhile, then the held-back ones."""
        conns = [c for c in conns if room in c.cursors and room not in c.buffers]
        if not conns:
            return
        for conn in conns:
            conn.buffers[room] = []
        backlog: list[rooms.RoomEvent] = []
        try:
            oldest = min(conn.cursors[room] for conn in conns)
            backlog, _ = await self._read_backlog(room, f"{oldest[0]}-{oldest[1]}")
        except StoreUnavailable:
            # Redis is away again: the next reconnect of the listener catches up once more.
            log.warning("catch-up failed", extra={"fields": {"room": room}})
        finally:
            for conn in conns:
                if room in conn.buffers:
                    self.deliver_backlog(conn, room, backlog)

    def _deliver_room_event(self, room: str, live: LiveEvent) -> None:
        feed = self._rooms.get(room)
        if feed is None:
            return
        for waiter in feed.waiters:
            waiter.set()
        for conn in feed.members:
            held = conn.buffers.get(room)
            if held is None:
                self._send_event(conn, live)
            elif len(held) < CATCH_UP_BUFFER_MAX:
                held.append(live)
            else:
                conn.abort(4008, "slow consumer")

    def _send_event(self, conn: Connection, live: LiveEvent) -> None:
        cursor = conn.cursors.get(live.room)
        if cursor is None or live.key <= cursor:
            return
        conn.cursors[live.room] = live.key
        self._metrics.events_delivered.inc()
        self._metrics.count_out("event")
        conn.send_frame(live.frame(conn.audience, conn.codec))


def _decode_tab(data: bytes) -> TabView:
    raw = msgpack.unpackb(data, raw=False)
    return TabView(
        tab_id=str(raw["tab"]),
        currency=str(raw["currency"]),
        state=str(raw["state"]),
        cap_minor=int(raw["cap"]),
        accrued_minor=int(raw["accrued"]),
        version=int(raw["ver"]),
        burn_minor_per_minute=int(raw.get("burn", 0)),
    )


async def current_tab(meter: Meter, customer: str, currency: str) -> TabView | None:
    """The customer's open tab in ``currency`` as a viewer sees it, or None."""
    tab_id = await meter.tabs.find_open(customer, currency)
    if tab_id is None:
        return None
    found = await meter.tabs.balance(TabRef(customer, tab_id))
    if found is None:
        return None
    tab_currency, balance = found
    return tab_view(tab_id, tab_currency, balance)


def tab_view(tab_id: str, currency: str, balance: Balance) -> TabView | None:
    """A tab's balance as its viewer sees it (None for a result that reached no tab)."""
    if balance.state is None:
        return None
    return TabView(
        tab_id=tab_id,
        currency=currency,
        state=str(balance.state),
        cap_minor=balance.cap_minor,
        accrued_minor=balance.accrued_minor,
        version=balance.version,
        burn_minor_per_minute=balance.burn_minor_per_minute,
    )
