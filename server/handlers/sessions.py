"""``session_start``, ``session_stop`` and ``set_rates``: metered shows and their prices."""

from __future__ import annotations

import logging
from collections.abc import Callable

from clients.protocol import (
    ErrorCode,
    Result,
    SessionStart,
    SessionStop,
    SessionUpdate,
    SetRates,
)
from clients.tickets import Role
from metering.errors import StoreError
from metering.keys import is_id
from metering.outcomes import Code
from metering.sessions import EndReason, Rate, SessionKind, SessionRef
from server.connection import Connection
from server.handlers.context import ERRORS, Context, explain
from server.runtime import Runtime
from server.views import session_view, tab_view
from server.wsproto import KEEPALIVE_EXTENSION

log = logging.getLogger("tipmeter.ws")


def watch_liveness(rt: Runtime, conn: Connection) -> None:
    """Ping a connection that funds a running show, and every model console, every
    ``TIPMETER_SHOW_PING_INTERVAL_MS`` and drop it ``TIPMETER_SHOW_PING_TIMEOUT_MS`` after a
    ping that got no pong; a viewer's goes back to the server's defaults once its shows are
    over.

    Why: a viewer whose connection vanishes without a close (a phone out of coverage, a NAT
    that forgot the flow) is billed until the server notices, and so is every viewer of a
    model whose console vanished (her process keeps her present while the connection lasts).
    With the default keepalive that is up to 40 s; with this, a few seconds
    (docs/sessions.md). Other connections (many viewers, broadcast tools) keep the cheap
    default; model consoles are one per room."""
    extension = (conn.websocket.scope.get("extensions") or {}).get(KEEPALIVE_EXTENSION)
    if not extension:
        return  # a server other than tipmeter's own (a test client): nothing to tighten
    if conn.sessions or conn.role is Role.MODEL:
        settings = rt.settings
        extension["set"](
            settings.show_ping_interval_ms / 1000, settings.show_ping_timeout_ms / 1000
        )
    else:
        extension["set"](None, None)


def _tell_ended(ctx: Context) -> Callable[[SessionRef, str], None]:
    """What the scheduler calls when a session of the connection ends: push it to the viewer."""
    rt, conn = ctx.rt, ctx.conn

    def ended(ref: SessionRef, reason: str) -> None:
        conn.sessions.pop(ref.session_id, None)
        watch_liveness(rt, conn)

        async def push() -> None:
            try:
                view = await session_view(rt.meter, ref.customer, ref.session_id)
            except StoreError:
                # The client still learns it: the session's end is in its tab and room events.
                log.warning("could not push a session's end", extra={"fields": {"id": conn.id}})
                return
            if view is not None:
                conn.send(SessionUpdate(session=view), "session")

        ctx.push_soon(push())

    return ended


async def handle_session_start(ctx: Context, message: SessionStart) -> None:
    """Start a metered show on the customer's current tab (viewers only)."""
    rt, conn = ctx.rt, ctx.conn
    if conn.role is not Role.VIEWER:
        ctx.refuse(ErrorCode.NOT_ALLOWED, "only viewers start sessions", id=message.id)
        return
    sessions = rt.meter.sessions
    if not (await sessions.present([message.room]))[message.room]:
        ctx.refuse(ErrorCode.MODEL_OFFLINE, "the model is not online", id=message.id)
        return
    started = await ctx.on_current_tab(
        lambda tab: sessions.start(
            tab,
            session_id=message.id,
            room=message.room,
            kind=message.kind,
            currency=conn.currency,
            owner=rt.scheduler.owner,
        )
    )
    if started is None:
        ctx.refuse(ErrorCode.NO_OPEN_TAB, "the customer has no open tab", id=message.id)
        return
    tab_id, result = started
    view = tab_view(tab_id, conn.currency, result.balance)
    if not result.code.ok:
        code = ERRORS.get(result.code, ErrorCode.INTERNAL_ERROR)
        needed = result.needed_minor if code is ErrorCode.INSUFFICIENT_CAP else None
        ctx.refuse(code, explain(code), id=message.id, tab=view, needed_minor=needed)
        return
    ref = SessionRef(conn.subject, message.id, tab_id)
    session = await session_view(rt.meter, conn.subject, message.id)
    if session is not None and session.state == "running":
        conn.sessions[message.id] = ref
        rt.scheduler.add(ref, message.room, _tell_ended(ctx))
        watch_liveness(rt, conn)
    await rt.meter.rooms.relay_pending(conn.subject)
    status = "applied" if result.code is Code.APPLIED else "duplicate"
    conn.send(Result(id=message.id, status=status, tab=view, session=session), "result")


async def handle_session_stop(ctx: Context, message: SessionStop) -> None:
    """Stop a session: the viewer's own (on any of her connections), or one in the model's
    room."""
    rt, conn = ctx.rt, ctx.conn
    sessions = rt.meter.sessions
    ref: SessionRef | None = None
    if conn.role is Role.VIEWER:
        ref = conn.sessions.get(message.session_id)
        if ref is None and is_id(message.session_id):
            # A session of this customer started on another connection (one that dropped, or
            # another device): stop it, or tell how it ended.
            found = await sessions.read(conn.subject, message.session_id)
            if found is not None and found.state == "ended":
                ended = await session_view(rt.meter, conn.subject, message.session_id)
                conn.send(Result(id=message.id, status="duplicate", session=ended), "result")
                return
            if found is not None:
                ref = SessionRef(conn.subject, message.session_id, found.tab_id)
    elif conn.role is Role.MODEL:
        ref = next(
            (
                r
                for r in await sessions.room_members(conn.subject)
                if r.session_id == message.session_id
            ),
            None,
        )
    if ref is None:
        ctx.refuse(ErrorCode.SESSION_NOT_FOUND, "no such session here", id=message.id)
        return
    if (ref.customer, ref.session_id) in rt.scheduler.owned:
        await rt.scheduler.end(ref, EndReason.STOPPED)
    else:
        # Another process bills it; ending it in Redis is enough: its next tick lets it go.
        await sessions.end(ref, EndReason.STOPPED)
        await rt.meter.rooms.relay_pending(ref.customer)
    session = await session_view(rt.meter, ref.customer, ref.session_id)
    conn.send(Result(id=message.id, status="applied", session=session), "result")


async def handle_set_rates(ctx: Context, message: SetRates) -> None:
    """The model sets her room's prices (within the site's bounds)."""
    rt, conn = ctx.rt, ctx.conn
    if conn.role is not Role.MODEL:
        ctx.refuse(ErrorCode.NOT_ALLOWED, "only the room's model sets its prices", id=message.id)
        return
    kinds = {kind.value for kind in SessionKind}
    if not set(message.rates) <= kinds:
        ctx.refuse(ErrorCode.INVALID_KIND, f"kinds are {sorted(kinds)}", id=message.id)
        return
    rates = {
        SessionKind(kind): Rate(rate.rate_per_minute_minor, rate.minimum_s)
        for kind, rate in message.rates.items()
    }
    code = await rt.meter.sessions.set_rates(conn.subject, rates)
    if code is not Code.APPLIED:
        error = ERRORS.get(code, ErrorCode.INVALID_FIELD)
        ctx.refuse(error, "prices must stay within the site's bounds", id=message.id)
        return
    conn.send(Result(id=message.id, status="applied"), "result")
