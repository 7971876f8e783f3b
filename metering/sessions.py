"""Metered sessions: private, spy and cam2cam shows billed per second against a tab's cap.

Theory of operation. A session is started by one server process — its *owner*, the process of
the viewer's connection — which then bills it once a second together with every other session
it owns, in batched calls (``bill_sessions.lua``). Billing is prepaid and computed from the
whole: after a tick at wall time ``now``, ``billed = floor((now - started) / 1000) + 1`` seconds
are paid for, and the amount is ``prorate(rate, billed)``, so a late tick catches up exactly
and a second is never billed twice. The seconds that fit under the cap are billed; when the
next one does not fit, the session ends ``cap_reached``.

The owner holds a *lease* on each session (``Limits.lease_ms``) and renews it every tick.
Billing stops when the lease lapses: a process that stalls finds its sessions ended
``owner_lost`` at its next tick, without charging the time it was away; a process that dies
never ticks again, and the *reaper* of any other process ends its sessions ``owner_lost`` once
their leases lapsed. Owners are found through a heartbeat set and a per-owner session set,
both written before the sessions they name exist (so nothing is ever unregistered).

Other ends: ``viewer_left`` (the viewer's connection closed), ``model_left`` (the model's
presence lapsed), ``stopped`` (either side stopped it), ``settling`` (the tab froze: the next
tick ends the session without billing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from metering import keys
from metering.clock import Clock
from metering.keys import check_id, is_id
from metering.lifecycle import SPENDABLE_LUA, TabState
from metering.limits import Limits
from metering.outcomes import Balance, Code, TabRef
from metering.rooms import Rooms
from metering.store import BatchedScript, LuaScript, Store, as_int, as_text, translated

_SESSION_PRELUDES: Final = ("_prelude", "_sessions")
START_SESSION: Final = LuaScript.load("start_session", preludes=_SESSION_PRELUDES)
BILL_SESSIONS: Final = LuaScript.load("bill_sessions", preludes=_SESSION_PRELUDES)
END_SESSION: Final = LuaScript.load("end_session", preludes=_SESSION_PRELUDES)
SESSION_SCRIPTS: Final = (START_SESSION, BILL_SESSIONS, END_SESSION)

#: Sessions one reaper pass ends at most per dead owner (the rest wait for the next pass).
REAP_BATCH_MAX: Final = 500
#: How long one process holds the right to reap a dead owner.
REAPER_LOCK_MS: Final = 10_000


#: What a session's line id on its tab starts with (``_sessions.lua`` writes ``sess:<id>``).
SESSION_LINE_PREFIX: Final = "sess:"


class SessionKind(StrEnum):
    """The kinds of metered show."""

    PRIVATE = "private"
    SPY = "spy"
    CAM2CAM = "cam2cam"


class EndReason(StrEnum):
    """Why a session ended."""

    CAP_REACHED = "cap_reached"
    VIEWER_LEFT = "viewer_left"
    MODEL_LEFT = "model_left"
    SETTLING = "settling"
    STOPPED = "stopped"
    OWNER_LOST = "owner_lost"


@dataclass(frozen=True, slots=True)
class Rate:
    """A room's price for one kind of show: minor units a minute, and a minimum duration."""

    rate_per_minute_minor: int
    minimum_s: int = 0


#: Prices where a room has set none.
DEFAULT_RATES: Final = {
    SessionKind.PRIVATE: Rate(600),
    SessionKind.SPY: Rate(200),
    SessionKind.CAM2CAM: Rate(900),
}


@dataclass(frozen=True, slots=True)
class SessionRef:
    """Names a running session for the tick: its customer, id and tab."""

    customer: str
    session_id: str
    tab_id: str


@dataclass(frozen=True, slots=True)
class SessionResult:
    """The outcome of starting or ending a session.

    ``billed_s`` and ``amount_minor`` are what the session has cost so far; ``needed_minor``
    (``insufficient_cap`` only) is how much more the cap must hold for the first charge.
    """

    code: Code
    session_id: str
    balance: Balance
    billed_s: int = 0
    amount_minor: int = 0
    needed_minor: int = 0
    reason: str = ""
    room: str = ""


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did to one session. ``status``: running, finished (ended in this tick),
    ended (had ended), not_owner, gone."""

    ref: SessionRef
    status: str
    billed_s: int
    amount_minor: int
    accrued_minor: int
    cap_minor: int
    burn_minor_per_minute: int
    version: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as read from Redis."""

    session_id: str
    tab_id: str
    room: str
    kind: str
    rate_per_minute_minor: int
    minimum_s: int
    started_at_ms: int
    billed_s: int
    amount_minor: int
    state: str
    reason: str
    ended_at_ms: int
    owner: str


def _balance(reply: Sequence[Any], state_at: int = 1) -> Balance:
    state = as_text(reply[state_at])
    return Balance(
        state=TabState(state) if state else None,
        cap_minor=as_int(reply[state_at + 1]),
        accrued_minor=as_int(reply[state_at + 2]),
        version=as_int(reply[state_at + 3]),
        burn_minor_per_minute=as_int(reply[state_at + 4]),
    )


def _session_keys(customer: str, session_id: str, tab_id: str) -> list[str]:
    return [
        keys.tab(customer, tab_id),
        keys.tab_lines(customer, tab_id),
        keys.session(customer, session_id),
        keys.outbox(customer),
        keys.customer_channel(customer),
    ]


def _tick_keys(ref: SessionRef) -> Sequence[str]:
    return _session_keys(ref.customer, ref.session_id, ref.tab_id)


def _tick_args(ref: SessionRef) -> Sequence[str]:
    return (ref.customer, ref.session_id)


def _decode_tick(ref: SessionRef, reply: Any) -> TickResult:
    return TickResult(
        ref=ref,
        status=as_text(reply[0]),
        billed_s=as_int(reply[1]),
        amount_minor=as_int(reply[2]),
        accrued_minor=as_int(reply[3]),
        cap_minor=as_int(reply[4]),
        burn_minor_per_minute=as_int(reply[5]),
        version=as_int(reply[6]),
        reason=as_text(reply[7]),
    )


BILL_SESSIONS_BATCHED: Final[BatchedScript[SessionRef, TickResult]] = BatchedScript(
    script=BILL_SESSIONS,
    keys_per_item=5,
    args_per_item=2,
    item_keys=_tick_keys,
    item_args=_tick_args,
    decode=_decode_tick,
)


def session_member(customer: str, session_id: str, tab_id: str) -> str:
    """How a session is named in the owner and room sets (``/`` never occurs in ids)."""
    return f"{customer}/{session_id}/{tab_id}"


def parse_session_member(member: str) -> SessionRef:
    """The reverse of :func:`session_member`."""
    customer, session_id, tab_id = member.split("/")
    return SessionRef(customer, session_id, tab_id)


class Sessions:
    """Start, bill, end and reap metered sessions."""

    def __init__(self, store: Store, clock: Clock, limits: Limits, rooms: Rooms) -> None:
        self._store = store
        self._clock = clock
        self._limits = limits
        self._rooms = rooms

    # -- prices -----------------------------------------------------------------------------

    async def rates(self, room: str) -> dict[SessionKind, Rate]:
        """``room``'s price of each kind of show (its own, or the defaults)."""
        check_id("room", room)
        with translated():
            raw = await self._store.client.hgetall(keys.room_profile(room))
        fields = {
            as_text(k): as_int(v)
            for k, v in raw.items()
            if as_text(k).startswith("rate:") or as_text(k).startswith("min_s:")
        }
        return {
            kind: Rate(
                fields.get(f"rate:{kind}", DEFAULT_RATES[kind].rate_per_minute_minor),
                fields.get(f"min_s:{kind}", DEFAULT_RATES[kind].minimum_s),
            )
            for kind in SessionKind
        }

    def rate_code(self, rate: Rate) -> Code | None:
        """Why ``rate`` is outside the site's bounds, or None."""
        limits = self._limits
        if type(rate.rate_per_minute_minor) is not int or type(rate.minimum_s) is not int:
            return Code.INVALID_AMOUNT
        if not limits.rate_min_minor <= rate.rate_per_minute_minor <= limits.rate_max_minor:
            return Code.AMOUNT_OUT_OF_RANGE
        if not 0 <= rate.minimum_s <= limits.session_minimum_s_max:
            return Code.INVALID_FIELD
        return None

    async def set_rates(self, room: str, rates: dict[SessionKind, Rate]) -> Code:
        """Set ``room``'s prices (later sessions only). Codes: invalid_amount,
        amount_out_of_range (outside the site's bounds), invalid_field, applied."""
        check_id("room", room)
        for rate in rates.values():
            refused = self.rate_code(rate)
            if refused is not None:
                return refused
        mapping: dict[str, int] = {}
        for kind, rate in rates.items():
            mapping[f"rate:{kind}"] = rate.rate_per_minute_minor
            mapping[f"min_s:{kind}"] = rate.minimum_s
        if mapping:
            with translated():
                await self._store.client.hset(keys.room_profile(room), mapping=mapping)  # type: ignore[arg-type]
        return Code.APPLIED

    # -- starting and ending ----------------------------------------------------------------

    async def start(
        self,
        ref: TabRef,
        *,
        session_id: str,
        room: str,
        kind: str,
        currency: str,
        owner: str,
    ) -> SessionResult:
        """Start a session funded by ``ref``, billed by ``owner``.

        Codes, in order: invalid_id, invalid_kind, then from Redis: duplicate, tab_not_found,
        currency_mismatch, tab_not_open, sessions_full, lines_full, insufficient_cap (with
        ``needed_minor``), applied. Nothing is written unless applied (but for the
        registrations, which point at nothing until then and are dropped by the reaper).
        """
        if not (is_id(session_id) and is_id(room)):
            return SessionResult(Code.INVALID_ID, str(session_id), Balance(None, 0, 0, 0))
        if kind not in {k.value for k in SessionKind}:
            return SessionResult(Code.INVALID_KIND, session_id, Balance(None, 0, 0, 0))
        check_id("customer", ref.customer)
        check_id("tab_id", ref.tab_id)
        price = (await self.rates(room))[SessionKind(kind)]
        payout_bp = await self._rooms.payout_bp(room)
        member = session_member(ref.customer, session_id, ref.tab_id)
        now_ms = self._clock.now_ms()
        with translated():
            # Registered first: no session ever exists that its owner's reaper cannot find.
            async with self._store.client.pipeline(transaction=False) as pipe:
                pipe.sadd(keys.owner_sessions(owner), member)
                pipe.zadd(keys.owners(), {owner: now_ms})
                pipe.sadd(keys.room_sessions(room), member)
                await pipe.execute()
        reply = await self._store.call(
            START_SESSION,
            _session_keys(ref.customer, session_id, ref.tab_id),
            [
                now_ms,
                ref.customer,
                session_id,
                ref.tab_id,
                room,
                kind,
                price.rate_per_minute_minor,
                price.minimum_s,
                payout_bp,
                owner,
                self._limits.lease_ms,
                self._limits.tab_lines_max,
                SPENDABLE_LUA,
                currency,
                self._limits.sessions_per_tab_max,
            ],
        )
        code = Code(as_text(reply[0]))
        if not code.ok:
            await self._unregister(owner, room, member)
        return SessionResult(
            code=code,
            session_id=session_id,
            balance=_balance(reply),
            billed_s=as_int(reply[6]),
            amount_minor=as_int(reply[7]),
            needed_minor=as_int(reply[8]),
        )

    async def _unregister(self, owner: str | None, room: str, member: str) -> None:
        with translated():
            async with self._store.client.pipeline(transaction=False) as pipe:
                if owner is not None:
                    pipe.srem(keys.owner_sessions(owner), member)
                pipe.srem(keys.room_sessions(room), member)
                await pipe.execute()

    async def end(
        self, ref: SessionRef, reason: EndReason, *, only_if_lease_lapsed: bool = False
    ) -> SessionResult:
        """End a running session for ``reason``.

        Codes: session_not_found, duplicate (it had ended: its reason), lease_alive (with
        ``only_if_lease_lapsed``: its owner still bills it), applied.
        """
        reply = await self._store.call(
            END_SESSION,
            _session_keys(ref.customer, ref.session_id, ref.tab_id),
            [
                self._clock.now_ms(),
                ref.customer,
                ref.session_id,
                reason.value,
                "1" if only_if_lease_lapsed else "0",
                SPENDABLE_LUA,
            ],
        )
        code = Code(as_text(reply[0]))
        return SessionResult(
            code=code,
            session_id=ref.session_id,
            balance=Balance(
                None, as_int(reply[4]), as_int(reply[3]), as_int(reply[6]), as_int(reply[5])
            ),
            billed_s=as_int(reply[1]),
            amount_minor=as_int(reply[2]),
            reason=as_text(reply[7]),
            room=as_text(reply[8]),
        )

    async def forget(self, ref: SessionRef, room: str, owner: str | None) -> None:
        """Drop an ended session from the owner's and the room's sets."""
        await self.forget_many([(ref, room)], owner)

    async def forget_many(self, ended: Sequence[tuple[SessionRef, str]], owner: str | None) -> None:
        """Drop ended sessions (with their rooms) from the owner's and the rooms' sets, in one
        round trip."""
        if not ended:
            return
        with translated():
            async with self._store.client.pipeline(transaction=False) as pipe:
                for ref, room in ended:
                    member = session_member(ref.customer, ref.session_id, ref.tab_id)
                    if owner is not None:
                        pipe.srem(keys.owner_sessions(owner), member)
                    pipe.srem(keys.room_sessions(room), member)
                await pipe.execute()

    async def read(self, customer: str, session_id: str) -> SessionView | None:
        """A session as Redis holds it, or None."""
        check_id("customer", customer)
        fields = [
            "tab",
            "room",
            "kind",
            "rate",
            "min_s",
            "started",
            "billed",
            "amount",
            "state",
            "reason",
            "ended_at",
            "owner",
        ]
        with translated():
            raw = await self._store.client.hmget(keys.session(customer, session_id), fields)
        if raw[0] is None:
            return None
        return SessionView(
            session_id=session_id,
            tab_id=as_text(raw[0]),
            room=as_text(raw[1]),
            kind=as_text(raw[2]),
            rate_per_minute_minor=as_int(raw[3]),
            minimum_s=as_int(raw[4]),
            started_at_ms=as_int(raw[5]),
            billed_s=as_int(raw[6]),
            amount_minor=as_int(raw[7]),
            state=as_text(raw[8]),
            reason=as_text(raw[9] or b""),
            ended_at_ms=as_int(raw[10] or 0),
            owner=as_text(raw[11]),
        )

    # -- the tick ---------------------------------------------------------------------------

    async def tick(self, owner: str, sessions: Sequence[SessionRef]) -> list[TickResult]:
        """Bill every session in ``sessions`` through the current second (see the module
        docstring), renewing ``owner``'s leases; one batched script call per slot."""
        fixed = (self._clock.now_ms(), owner, self._limits.lease_ms, SPENDABLE_LUA)
        return await self._store.call_batched(BILL_SESSIONS_BATCHED, fixed, sessions)

    async def heartbeat(self, owner: str) -> None:
        """Say that billing process ``owner`` is alive."""
        with translated():
            await self._store.client.zadd(keys.owners(), {owner: self._clock.now_ms()})

    async def dead_owners(self, silent_ms: int) -> list[str]:
        """Billing processes that have not sent a heartbeat for ``silent_ms``."""
        with translated():
            raw = await self._store.client.zrangebyscore(
                keys.owners(), "-inf", self._clock.now_ms() - silent_ms, start=0, num=100
            )
        return [as_text(owner) for owner in raw]

    async def reap(self, owner: str) -> list[SessionResult]:
        """End the sessions of dead owner ``owner`` whose leases lapsed (``owner_lost``), drop
        them from the sets, and relay their room events.

        Safe from any number of processes at once: one takes a short lock per owner, and
        ending is idempotent anyway. The owner is forgotten once it holds no session.
        """
        with translated():
            locked = await self._store.client.set(
                keys.owner_reaper(owner), b"1", nx=True, px=REAPER_LOCK_MS
            )
            if not locked:
                return []
            sample = await self._store.client.srandmember(
                keys.owner_sessions(owner), REAP_BATCH_MAX
            )
            members = [as_text(m) for m in sample] if isinstance(sample, list) else []
        ended: list[SessionResult] = []
        gone: list[tuple[SessionRef, str]] = []
        for member in members:
            ref = parse_session_member(member)
            result = await self.end(ref, EndReason.OWNER_LOST, only_if_lease_lapsed=True)
            if result.code is Code.LEASE_ALIVE:
                continue  # not lapsed yet: the next pass ends it
            if result.code is Code.APPLIED:
                ended.append(result)
            if result.room:
                gone.append((ref, result.room))
            else:  # no such session: it never started (a registration that came to nothing)
                with translated():
                    await self._store.client.srem(keys.owner_sessions(owner), member)
        await self.forget_many(gone, owner)
        await self._rooms.relay_pending_many(sorted({ref.customer for ref, _ in gone}))
        with translated():
            async with self._store.client.pipeline(transaction=False) as pipe:
                pipe.scard(keys.owner_sessions(owner))
                pipe.delete(keys.owner_reaper(owner))
                left, _ = await pipe.execute()
            if left == 0:
                await self._store.client.zrem(keys.owners(), owner)
        return ended

    # -- model presence ---------------------------------------------------------------------

    async def mark_present(self, room_connections: Sequence[tuple[str, str]], ttl_ms: int) -> None:
        """Renew the presence of model connections (room, connection id) for ``ttl_ms``."""
        if not room_connections:
            return
        until = self._clock.now_ms() + ttl_ms
        with translated():
            async with self._store.client.pipeline(transaction=False) as pipe:
                for room, connection in room_connections:
                    pipe.zadd(keys.room_presence(room), {connection: until})
                await pipe.execute()

    async def mark_absent(self, room: str, connection: str) -> None:
        """A model connection closed."""
        with translated():
            await self._store.client.zrem(keys.room_presence(room), connection)

    async def present(self, rooms: Sequence[str]) -> dict[str, bool]:
        """Whether each room's model has a live connection somewhere."""
        if not rooms:
            return {}
        now_ms = self._clock.now_ms()
        with translated():
            async with self._store.client.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.zcount(keys.room_presence(room), now_ms, "+inf")
                counts = await pipe.execute()
        return {room: count > 0 for room, count in zip(rooms, counts, strict=True)}

    async def room_members(self, room: str) -> list[SessionRef]:
        """The sessions registered in ``room`` (ended ones among them, until forgotten)."""
        with translated():
            raw = await self._store.client.smembers(keys.room_sessions(room))
        return [parse_session_member(as_text(m)) for m in raw]
