"""The session scheduler: one timer per process bills every session the process owns.

Theory of operation. A task per session awaiting Redis falls over near a few thousand sessions;
one timer billing them all in batched script calls holds tens of thousands. Every ``tick_ms``
(aligned to the loop's clock, never drifting; a late tick is measured as *tick lag*, and billing
catches up exactly because it is computed from the elapsed time) the scheduler:

1. bills all owned sessions in one :meth:`metering.sessions.Sessions.tick` (one script call per
   slot and 256 sessions, all in one pipeline), which also renews this process's leases;
2. renews this process's heartbeat and the presence of its model connections;
3. ends the sessions whose model is gone (``model_left``);
4. reaps the sessions of billing processes that stopped sending heartbeats (``owner_lost``);
5. relays the room events this process left in customers' outboxes (a relay that failed, a tip
   answered ``unavailable`` or ``duplicate``: :meth:`metering.rooms.Rooms.relay_owed`), so
   they reach their rooms without a settlement worker.

Sessions that end (in the tick or otherwise) are forgotten and their room events relayed; the
viewer's connection, if it is here, is told why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from metering.errors import StoreError
from metering.meter import Meter
from metering.outcomes import TabRef
from metering.sessions import EndReason, SessionRef, TickResult
from server.metrics import Metrics

log = logging.getLogger("tipmeter.scheduler")

#: A billing process that sent no heartbeat for this long is presumed dead (its leases, a few
#: seconds, lapse about then too).
OWNER_SILENT_MS: Final = 3_000


@dataclass(slots=True)
class Owned:
    """A session this process bills, and who to tell when it ends."""

    ref: SessionRef
    room: str
    on_end: Callable[[SessionRef, str], None] | None = None


def new_owner_id() -> str:
    """A unique name for this process as a billing owner (host, pid, and random bits)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Scheduler:
    """Bills, heartbeats, watches presence and reaps, once per ``tick_ms``."""

    def __init__(
        self,
        meter: Meter,
        metrics: Metrics,
        *,
        tick_ms: int = 1_000,
        on_tick: Callable[[float, float], None] | None = None,
        on_exhausted: Callable[[TabRef], None] | None = None,
        owner: str | None = None,
    ) -> None:
        self.meter = meter
        self.metrics = metrics
        self.tick_ms = tick_ms
        #: Told (lag in seconds, duration in seconds) after every tick; benchmarks use it.
        self.on_tick = on_tick
        #: Told the tab of every session that ended ``cap_reached`` (the cap ran out).
        self.on_exhausted = on_exhausted
        #: This process's id: on session leases, and in the customers' device counts.
        self.owner = owner if owner is not None else new_owner_id()
        self.owned: dict[tuple[str, str], Owned] = {}
        #: Model connections here: connection id → room (their presence is renewed each tick).
        self.models: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        #: Sessions that ended since the last tick, whose sets and room events the next tick
        #: settles in a few round trips (however many ended).
        self._ended_since_tick: list[Owned] = []

    def start(self) -> None:
        """Start ticking."""
        self._task = asyncio.create_task(self._run(), name="session scheduler")

    async def stop(self) -> None:
        """Stop ticking (sessions still owned are left to their leases and the reapers)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(
        self, ref: SessionRef, room: str, on_end: Callable[[SessionRef, str], None] | None
    ) -> None:
        """Bill ``ref`` from the next tick on; ``on_end`` is told when it ends."""
        self.owned[(ref.customer, ref.session_id)] = Owned(ref, room, on_end)
        self.metrics.sessions.set(len(self.owned))

    async def end(self, ref: SessionRef, reason: EndReason) -> None:
        """End an owned session now (the viewer left, or stopped it)."""
        owned = self.owned.get((ref.customer, ref.session_id))
        await self.meter.sessions.end(ref, reason)
        if owned is not None:
            self._ended(owned, reason.value)
            await self._settle_ended()

    def _ended(self, owned: Owned, reason: str) -> None:
        """Stop billing ``owned``; its sets and room events are settled by _settle_ended."""
        if self.owned.pop((owned.ref.customer, owned.ref.session_id), None) is None:
            return
        self.metrics.sessions.set(len(self.owned))
        self.metrics.sessions_ended.labels(reason).inc()
        self._ended_since_tick.append(owned)
        if reason == "cap_reached" and self.on_exhausted is not None:
            self.on_exhausted(TabRef(owned.ref.customer, owned.ref.tab_id))
        if owned.on_end is not None:
            owned.on_end(owned.ref, reason)

    async def _settle_ended(self) -> None:
        """Forget the sessions that ended and relay their room events: three round trips."""
        ended, self._ended_since_tick = self._ended_since_tick, []
        if not ended:
            return
        try:
            await self.meter.sessions.forget_many([(o.ref, o.room) for o in ended], self.owner)
            await self.meter.rooms.relay_pending_many(sorted({o.ref.customer for o in ended}))
        except StoreError:
            # Harmless to leave: the sets only name ended sessions (the reaper drops them), and
            # the events wait in the outboxes for the next relay_pending.
            log.warning("could not settle ended sessions", extra={"fields": {"count": len(ended)}})

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.tick_ms / 1000
        due = loop.time() + tick_s
        while True:
            await asyncio.sleep(max(due - loop.time(), 0))
            lag_s = loop.time() - due
            self.metrics.tick_lag.observe(max(lag_s, 0.0))
            started = time.perf_counter()
            try:
                await self.tick()
            except StoreError:
                log.warning("tick failed: Redis unavailable", exc_info=True)
            except Exception:
                log.exception("tick failed")
            duration_s = time.perf_counter() - started
            self.metrics.tick_seconds.observe(duration_s)
            if self.on_tick is not None:
                self.on_tick(max(lag_s, 0.0), duration_s)
            # The next tick is due one period after this one was; a tick that ran over its
            # period is not made up (billing is computed from elapsed time, not tick counts).
            due = max(due + tick_s, loop.time())

    async def tick(self) -> None:
        """One pass: bill, heartbeat, presence, reap."""
        sessions = self.meter.sessions
        owned = list(self.owned.values())
        if owned:
            results = await sessions.tick(self.owner, [o.ref for o in owned])
            for o, result in zip(owned, results, strict=True):
                if result.status != "running":
                    self._on_stopped(o, result)
        await self._settle_ended()
        await sessions.heartbeat(self.owner)
        await sessions.mark_present(
            [(room, conn_id) for conn_id, room in self.models.items()], self.meter.limits.lease_ms
        )
        await self._check_models()
        await self._reap()
        await self.meter.rooms.relay_owed()

    def _on_stopped(self, owned: Owned, result: TickResult) -> None:
        if result.status == "not_owner":
            # Another process holds the lease (it took over after we stalled): let it bill.
            self.owned.pop((owned.ref.customer, owned.ref.session_id), None)
            self.metrics.sessions.set(len(self.owned))
            return
        self._ended(owned, result.reason or result.status)

    async def _check_models(self) -> None:
        rooms = sorted({o.room for o in self.owned.values()})
        if not rooms:
            return
        present = await self.meter.sessions.present(rooms)
        for o in list(self.owned.values()):
            if not present.get(o.room, True):
                await self.meter.sessions.end(o.ref, EndReason.MODEL_LEFT)
                self._ended(o, EndReason.MODEL_LEFT.value)
        await self._settle_ended()

    async def _reap(self) -> None:
        for owner in await self.meter.sessions.dead_owners(OWNER_SILENT_MS):
            if owner == self.owner:
                continue
            ended = await self.meter.sessions.reap(owner)
            if ended:
                self.metrics.sessions_ended.labels(EndReason.OWNER_LOST.value).inc(len(ended))
                log.info(
                    "reaped sessions of a silent process",
                    extra={"fields": {"owner": owner, "sessions": len(ended)}},
                )

    async def model_left(self, room: str, conn_id: str) -> None:
        """A model connection closed: if no other is present, end the room's sessions."""
        self.models.pop(conn_id, None)
        await self.meter.sessions.mark_absent(room, conn_id)
        if (await self.meter.sessions.present([room]))[room]:
            return
        others: list[tuple[SessionRef, str]] = []
        for ref in await self.meter.sessions.room_members(room):
            await self.meter.sessions.end(ref, EndReason.MODEL_LEFT)
            owned = self.owned.get((ref.customer, ref.session_id))
            if owned is not None:
                self._ended(owned, EndReason.MODEL_LEFT.value)
            else:
                others.append((ref, room))  # billed elsewhere: its owner's tick lets it go
        await self._settle_ended()
        await self.meter.sessions.forget_many(others, None)
        await self.meter.rooms.relay_pending_many(sorted({ref.customer for ref, _ in others}))
