"""Fan-out: room events and tab balances from Redis to this process's connections.

Theory of operation. The scripts announce every room event on the room's sharded channel
(``tm:{r:R}:live``) and every tab balance on the customer's (``tm:{c:C}:live``), in the same
atomic step that makes the change. This process subscribes to the channels of the rooms and
customers it has connections for — one :class:`ChannelListener` (one Redis connection) per
Redis node, since a shard channel lives on the node of its slot — and hands each message to the
connections that follow it, encoded once per audience and codec.

Pub/sub delivers at most once: a message published while a listener is down is lost. Room
streams make that harmless. Each connection keeps a cursor per room (the id of the last event
it got). Joining a room, and every failure of a listener, starts a *catch-up* for that
connection and room: live messages are held back while the stream is read after the cursor
(``XRANGE``), a page at a time as the client reads, so a backlog of any length fits the
connection's send queue; the stream is read again until a short page comes back with nothing
that may have been missed since (a listener failed, held-back messages overflowed their bound),
and then the held-back messages newer than the cursor follow, in the same step. Every event is
delivered in order, once, with no gap — up to the stream's bound, past which the client is told
``gap``. A catch-up retries while Redis answers errors (it may be loading its data after a
restart): nothing is skipped for good.

A listener lives as long as its connection. On any failure — the connection breaks, Redis
answers an error (``MOVED`` after a failover), a slot moves away — the hub marks its rooms
*stale* (no catch-up may finish: live messages are being lost), refreshes the cluster's map of
slots, subscribes the channels again on the nodes that serve them now, and only then lets the
catch-ups finish. Tab balances need no history: after a resubscription each viewer is sent
its tab's current balance, and versions drop anything stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from asyncio import current_task
from collections.abc import Awaitable, Callable
from typing import Any, Final

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from clients.protocol import CloseCode, TabView
from metering import keys, rooms
from metering.devices import record_devices
from metering.errors import StoreError, StoreUnavailable
from metering.meter import Meter
from metering.store import RedisTarget, translated
from server.connection import CATCH_UP_BUFFER_MAX, Connection
from server.events import LiveEvent
from server.metrics import Metrics
from server.pubsub import Endpoint, PubSubError, PushConnection
from server.views import current_tab, decode_tab_announcement

log = logging.getLogger("tipmeter.hub")

#: How long a subscription may take to be confirmed before the join fails.
SUBSCRIBE_TIMEOUT_S: Final = 5.0
#: Backoff between reconnects of a listener (doubling, with jitter).
RECONNECT_BACKOFF_S_MIN: Final = 0.05
RECONNECT_BACKOFF_S_MAX: Final = 5.0
#: Events one catch-up reads per round trip at most (and at most half the send queue).
CATCH_UP_PAGE_EVENTS: Final = 500

OnMessage = Callable[[str, bytes], None]


class ChannelListener:
    """One Redis connection subscribed to shard channels of one node.

    It lives as long as its connection: on any failure (the connection breaks, Redis answers
    an error, a slot moves away) it tells the hub, which takes its channels back, and ends. The
    hub then subscribes them again wherever they live now (see :meth:`Hub._recover`).
    """

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        on_message: OnMessage,
        on_failed: Callable[[ChannelListener], None],
    ) -> None:
        self.name = name
        self._endpoint = endpoint
        self._on_message = on_message
        self._on_failed = on_failed
        self.channels: set[str] = set()
        self.dead = False
        self._conn: PushConnection | None = None
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        #: Held while subscriptions are sent, so that a channel added while the connection is
        #: being made is either in the first batch or sent after it, never neither.
        self._sending = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the listening task."""
        self._task = asyncio.create_task(self._run(), name=f"listener {self.name}")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        self.dead = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel`` and return once Redis confirmed it; raise StoreUnavailable
        if it cannot be confirmed."""
        if self.dead:
            raise StoreUnavailable(f"the listener of {self.name} is gone")
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
                # else: the listener is connecting and sends it with the rest
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
        conn: PushConnection | None = None
        try:
            conn = await PushConnection.open(self._endpoint)
            async with self._sending:
                if self.channels:
                    await conn.subscribe(sorted(self.channels))
                self._conn = conn
            while True:
                self._handle(await conn.read())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever broke, the hub subscribes the channels again
            log.warning(
                "pub/sub connection lost; subscribing again",
                extra={"fields": {"node": self.name, "error": repr(exc)}},
            )
        finally:
            self.dead = True
            self._conn = None
            confirmations, self._confirmations = self._confirmations, {}
            for confirmed in confirmations.values():
                if not confirmed.done():
                    confirmed.set_exception(StoreUnavailable(f"pub/sub on {self.name} failed"))
                    confirmed.exception()  # retrieved here: a waiter may have timed out
            if conn is not None:
                await conn.close()
        self._on_failed(self)

    def _handle(self, push: Any) -> None:
        """Act on one push; raise PubSubError for anything that calls for a new connection."""
        if isinstance(push, hiredis.ReplyError):
            raise PubSubError(f"Redis answered {push}")
        if not isinstance(push, list) or len(push) < 2:
            raise PubSubError(f"unexpected reply {push!r}")
        kind = push[0]
        if kind == b"smessage":
            self._dispatch(push[1].decode(), push[2])
        elif kind == b"ssubscribe":
            confirmed = self._confirmations.pop(push[1].decode(), None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == b"sunsubscribe" and push[1].decode() in self.channels:
            # Redis unsubscribed us (the channel's slot moved to another node).
            raise PubSubError(f"Redis unsubscribed {push[1].decode()}")

    def _dispatch(self, channel: str, data: bytes) -> None:
        try:
            self._on_message(channel, data)
        except Exception:  # one bad message must not stop the listener
            log.exception("could not deliver a message", extra={"fields": {"channel": channel}})


class _RoomFeed:
    __slots__ = ("fresh", "members", "room", "stale", "waiters")

    def __init__(self, room: str) -> None:
        self.room = room
        self.members: set[Connection] = set()
        self.waiters: set[asyncio.Event] = set()
        #: True while the room's channel is not subscribed after a listener failed: live
        #: events may be lost, so no catch-up may end (``fresh`` is set once it is back).
        self.stale = False
        self.fresh = asyncio.Event()
        self.fresh.set()


class _CatchUp:
    """One connection catching up on one room: ``dirty`` says the stream must be read again
    before the live events held back may follow."""

    __slots__ = ("dirty", "task")

    def __init__(self, dirty: bool) -> None:
        self.dirty = dirty
        self.task: asyncio.Task[None] | None = None


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
        #: Connections catching up on a room, and those joining one (True: the join's catch-up
        #: must read the stream even without a cursor, because a listener failed meanwhile).
        self._catchups: dict[tuple[Connection, str], _CatchUp] = {}
        self._joining: dict[tuple[Connection, str], bool] = {}
        #: Channels a recovery is subscribing again (see :meth:`_recover`).
        self._recovering: set[str] = set()
        self._background: set[asyncio.Future[None]] = set()
        self._stopping = False

    def _soon(self, work: Awaitable[None]) -> asyncio.Future[None]:
        """Run ``work`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def stop(self) -> None:
        """Stop every listener, recovery and catch-up."""
        self._stopping = True
        tasks = [*self._background, *(s.task for s in self._catchups.values() if s.task)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for listener in list(self._listeners.values()):
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
        if listener is None or listener.dead:
            listener = ChannelListener(name, endpoint, self._on_message, self._on_listener_failed)
            listener.start()
            self._listeners[name] = listener
        return listener

    def _on_listener_failed(self, listener: ChannelListener) -> None:
        """A listener's connection failed: hold its rooms back and subscribe its channels
        again, wherever they live now."""
        if self._listeners.get(listener.name) is listener:
            del self._listeners[listener.name]
        channels = set(listener.channels)
        if self._stopping or not channels:
            return
        for channel in channels:
            self._mark_room(channel, stale=True)
        # A recovery already under way retries its channels itself (with its growing backoff).
        fresh = channels - self._recovering
        if fresh:
            self._recovering |= fresh
            self._soon(self._recover(fresh))

    async def _recover(self, channels: set[str]) -> None:
        """Subscribe ``channels`` again until each is confirmed on a live connection (after a
        cluster failover, on the node that serves its slot now), then catch their followers
        up. Runs until done: Redis may take a while to come back."""
        backoff = RECONNECT_BACKOFF_S_MIN
        pending = channels
        try:
            while pending:
                await asyncio.sleep(backoff * (0.5 + random.random()))
                pending = await self._subscribe_again(pending)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_S_MAX)
        finally:
            self._recovering -= channels

    async def _subscribe_again(self, channels: set[str]) -> set[str]:
        """One try of :meth:`_recover`; returns the channels still to subscribe."""
        pending = {
            c for c in channels if c in self._room_of_channel or c in self._customer_of_channel
        }
        if not pending:
            return pending
        client = self._meter.store.client
        try:
            if isinstance(client, RedisCluster):
                await client.nodes_manager.initialize()  # where every slot lives now
            targets = {channel: self._listener_for(channel) for channel in sorted(pending)}
        except (RedisError, StoreError, OSError) as exc:
            log.warning("cannot subscribe yet", extra={"fields": {"error": repr(exc)}})
            return pending
        outcomes = await asyncio.gather(
            *(listener.subscribe(channel) for channel, listener in targets.items()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, StoreError):
                raise outcome
        done = {
            channel
            for (channel, listener), outcome in zip(targets.items(), outcomes, strict=True)
            if outcome is None and not listener.dead
        }
        self._resync(done)
        if done == pending:
            log.info("pub/sub subscribed again", extra={"fields": {"channels": len(done)}})
        return pending - done

    def _on_message(self, channel: str, data: bytes) -> None:
        room = self._room_of_channel.get(channel)
        if room is not None:
            self._deliver_room_event(room, LiveEvent(room, rooms.decode_announcement(data)))
            return
        customer = self._customer_of_channel.get(channel)
        if customer is not None:
            self._deliver_tab(customer, decode_tab_announcement(data))

    def _resync(self, channels: set[str]) -> None:
        """``channels`` are subscribed again: catch every follower up on what it may have
        missed meanwhile, and send every viewer its tab's current balance."""
        for channel in channels:
            self._mark_room(channel, stale=False)
            customer = self._customer_of_channel.get(channel)
            if customer is not None:
                self._soon(self._refresh_tabs_until_done(customer))

    def _mark_room(self, channel: str, *, stale: bool) -> None:
        """Mark the room of ``channel`` (if any) stale or fresh, and hold its followers' live
        events back either way: a stale room's live events are being lost, and a fresh one's
        may have been, so every follower reads the stream again before they may follow."""
        room = self._room_of_channel.get(channel)
        feed = self._rooms.get(room) if room is not None else None
        if feed is None:
            return
        feed.stale = stale
        if stale:
            feed.fresh.clear()
        else:
            feed.fresh.set()
        for conn in feed.members:
            self._hold(conn, feed.room)

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
            self._unsubscribe_soon(channel)

    def _unsubscribe_soon(self, channel: str) -> None:
        for listener in self._listeners.values():
            if channel in listener.channels:
                self._soon(listener.unsubscribe(channel))

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

    async def _refresh_tabs_until_done(self, customer: str) -> None:
        """:meth:`_refresh_tabs`, again after a backoff while Redis answers errors (it may be
        loading its data after a restart)."""
        backoff = RECONNECT_BACKOFF_S_MIN
        while customer in self._customers:
            try:
                await self._refresh_tabs(customer)
                return
            except StoreError as exc:
                log.warning(
                    "could not refresh a tab; retrying",
                    extra={"fields": {"customer": customer, "error": repr(exc)}},
                )
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, RECONNECT_BACKOFF_S_MAX)

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
        self._unsubscribe_soon(channel)

    async def join_room(self, conn: Connection, room: str, after: str | None) -> bool:
        """Start following ``room`` for ``conn`` from the cursor ``after`` (None: from now).

        Returns whether events after the cursor were lost (trimmed from the stream). Live events
        for ``conn`` and ``room`` are held back until :meth:`start_catch_up` has sent the
        backlog; the caller answers ``subscribed`` in between.
        """
        channel = keys.room_channel(room)
        feed = await self._acquire_room(room)
        feed.members.add(conn)
        conn.buffers[room] = []
        self._joining[(conn, room)] = after is not None
        try:
            await self._listener_for(channel).subscribe(channel)
            with translated():
                if after is None:
                    latest = await self._meter.rooms.latest_id(room)
                    conn.cursors[room] = rooms.parse_stream_id(latest) if latest else (0, 0)
                    return False
                conn.cursors[room] = rooms.parse_stream_id(after)
                return (await self._meter.rooms.read(room, after=after, count=1)).gap
        except BaseException:
            self.leave_room(conn, room)
            raise

    def start_catch_up(self, conn: Connection, room: str) -> None:
        """Send ``conn`` the backlog of the room it just joined, page by page as it reads,
        then the live events held back meanwhile."""
        key = (conn, room)
        if key not in self._joining:
            return
        read = self._joining.pop(key)
        self._start(conn, room, _CatchUp(dirty=read))

    def _start(self, conn: Connection, room: str, state: _CatchUp) -> None:
        self._catchups[(conn, room)] = state
        state.task = asyncio.get_running_loop().create_task(self._catch_up(conn, room, state))

    def _hold(self, conn: Connection, room: str) -> None:
        """Hold ``room``'s live events for ``conn`` until a catch-up read the stream again."""
        key = (conn, room)
        if room not in conn.cursors and key not in self._joining:
            return
        state = self._catchups.get(key)
        if state is not None:
            state.dirty = True
        elif key in self._joining:
            self._joining[key] = True
        else:
            conn.buffers.setdefault(room, [])
            self._start(conn, room, _CatchUp(dirty=True))

    def leave_room(self, conn: Connection, room: str) -> None:
        """Stop delivering ``room``'s events to ``conn``."""
        conn.cursors.pop(room, None)
        conn.buffers.pop(room, None)
        self._joining.pop((conn, room), None)
        state = self._catchups.pop((conn, room), None)
        if state is not None and state.task is not None and state.task is not current_task():
            state.task.cancel()
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
        for room in {*conn.cursors, *(r for c, r in self._joining if c is conn)}:
            self.leave_room(conn, room)
        if conn.currency:
            self.unfollow_customer(conn)

    async def _catch_up(self, conn: Connection, room: str, state: _CatchUp) -> None:
        """Deliver what ``conn`` has not seen of ``room`` from its stream, a page at a time as
        the client reads (so a backlog of any length fits the send queue), then the live
        events held back meanwhile.

        The stream is read again as long as something may be missing from what was read: a
        full page, a listener that failed (``dirty``), held-back events dropped for space. It
        retries while Redis answers errors (it may be loading its data after a restart); the
        held-back events wait, and past their bound they are read from the stream instead.
        """
        key = (conn, room)
        page_events = max(1, min(CATCH_UP_PAGE_EVENTS, conn.send_queue_max // 2))
        backoff = RECONNECT_BACKOFF_S_MIN

        def current() -> bool:
            return self._catchups.get(key) is state and room in conn.cursors

        try:
            while current():
                feed = self._rooms.get(room)
                if feed is None:
                    return
                if feed.stale:
                    await feed.fresh.wait()
                    continue
                if not state.dirty:
                    # Caught up: the held-back events follow, in the same step (no await).
                    for live in conn.buffers.pop(room, []):
                        self._send_event(conn, live)
                    return
                if not await conn.wait_for_room(page_events) or not current():
                    return
                state.dirty = False
                ms, seq = conn.cursors[room]
                try:
                    page = await self._meter.rooms.read(
                        room, after=f"{ms}-{seq}", count=page_events
                    )
                except StoreError as exc:
                    state.dirty = True
                    log.warning(
                        "catch-up failed; retrying",
                        extra={"fields": {"room": room, "error": repr(exc)}},
                    )
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, RECONNECT_BACKOFF_S_MAX)
                    continue
                backoff = RECONNECT_BACKOFF_S_MIN
                if not current():
                    return
                for event in page.events:
                    self._send_event(conn, LiveEvent(room, event))
                if len(page.events) >= page_events:
                    state.dirty = True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("catch-up broke", extra={"fields": {"room": room}})
            conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            if self._catchups.get(key) is state:
                del self._catchups[key]

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
                # No room to hold more: drop what is held and read it all from the stream.
                held.clear()
                self._hold(conn, room)

    def _send_event(self, conn: Connection, live: LiveEvent) -> None:
        cursor = conn.cursors.get(live.room)
        if cursor is None or live.key <= cursor:
            return
        conn.cursors[live.room] = live.key
        self._metrics.events_delivered.inc()
        self._metrics.count_out("event")
        conn.send_frame(live.frame(conn.audience, conn.codec))
