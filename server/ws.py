"""The WebSocket endpoint ``/ws``: one connection from handshake to close.

Admission (:mod:`server.admission`) happens before the connection is accepted, so a refused
client never gets a socket. After the ``welcome``, the reader loop counts each frame against
the connection's frame rate, decodes it with :mod:`clients.protocol` and hands it to
:func:`server.dispatch.dispatch`, whose table routes it to its handler; a frame that is invalid
or over the rate is charged to the connection's error budget. Frames to the client go through
the connection's bounded queue (:mod:`server.connection`).
"""

from __future__ import annotations

import logging
import random
from typing import Final

from starlette.websockets import WebSocket

from clients.protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    Drain,
    Invalid,
    TabView,
    Welcome,
    decode_client,
)
from clients.tickets import Role
from metering.errors import StoreError
from metering.sessions import EndReason
from server.admission import accept, admit
from server.dispatch import dispatch
from server.handlers.context import Context
from server.handlers.sessions import watch_liveness
from server.runtime import Runtime, runtime
from server.views import current_tab

log = logging.getLogger("tipmeter.ws")

#: Clients told to reconnect spread their reconnects over this window.
RECONNECT_SPREAD_MS: Final = 5_000


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one WebSocket connection from handshake to close."""
    rt = runtime(websocket)
    admitted = await admit(rt, websocket)
    if admitted is None:
        return
    ctx = await accept(rt, websocket, admitted)
    conn = ctx.conn
    rt.connections.add(conn)
    rt.no_connections.clear()
    gauge = rt.metrics.connections.labels(str(conn.role))
    gauge.inc()
    try:
        if await _welcome(ctx):
            await _read(ctx)
    finally:
        await _leave(ctx)
        await ctx.finish_pushes()
        await conn.flush()
        rt.hub.forget(conn)
        if rt.consent is not None:
            rt.consent.leave(conn)
        if rt.memberships is not None:
            rt.memberships.leave(conn)
        rt.connections.discard(conn)
        if not rt.connections:
            rt.no_connections.set()
        gauge.dec()
        await conn.stop()


async def _leave(ctx: Context) -> None:
    """The connection closed: end the viewer's sessions, or withdraw the model's presence."""
    rt, conn = ctx.rt, ctx.conn
    try:
        for ref in list(conn.sessions.values()):
            await rt.scheduler.end(ref, EndReason.VIEWER_LEFT)
        if conn.role is Role.MODEL:
            await rt.scheduler.model_left(conn.subject, conn.id)
    except StoreError:
        # Redis is away: the sessions' leases lapse and the reapers end them, or, for a model,
        # her presence lapses and the owners' ticks end the sessions.
        log.warning("could not end sessions on close", extra={"fields": {"connection": conn.id}})


def _limits(rt: Runtime) -> dict[str, int]:
    s = rt.settings
    return {
        "frame_bytes_max": s.frame_bytes_max,
        "tips_per_s_max": s.tips_per_s_max,
        "tips_burst_max": s.tips_burst_max,
        "subscriptions_max": s.subscriptions_max,
        "send_queue_frames_max": s.send_queue_frames_max,
    }


async def _welcome(ctx: Context) -> bool:
    """Send the welcome (the viewer's tab, or the model's earnings); False if Redis is away."""
    rt, conn = ctx.rt, ctx.conn
    tab: TabView | None = None
    earnings: dict[str, int] | None = None
    try:
        if conn.role is Role.VIEWER:
            await rt.hub.follow_customer(conn)
            tab = await current_tab(rt.meter, conn.subject, conn.currency)
            if tab is not None:
                conn.tab_id, conn.tab_version = tab.tab_id, tab.version
        elif conn.role is Role.MODEL:
            watch_liveness(rt, conn)
            rt.scheduler.models[conn.id] = conn.subject
            await rt.meter.sessions.mark_present(
                [(conn.subject, conn.id)], rt.meter.limits.lease_ms
            )
            raw = await rt.meter.rooms.earnings(conn.subject)
            earnings = {
                field.removeprefix("accrued:"): value
                for field, value in raw.items()
                if field.startswith("accrued:")
            }
    except StoreError:
        log.warning("welcome failed: Redis unavailable", extra={"fields": {"connection": conn.id}})
        conn.close_soon(CloseCode.TRY_AGAIN_LATER, "unavailable")
        return False
    welcome = Welcome(
        protocol=PROTOCOL_VERSION,
        role=str(conn.role),
        subject=conn.subject,
        connection_id=conn.id,
        server_time_ms=rt.meter.clock.now_ms(),
        limits=_limits(rt),
        tab=tab,
        earnings=earnings,
    )
    conn.send(welcome, "welcome")
    conn.welcomed = True
    conn.release_tab_push()
    if rt.consent is not None:  # a model's refunds waiting for her consent (consent_push)
        rt.consent.join(conn)
    if rt.memberships is not None:  # a viewer's subscriptions (subscription_push)
        rt.memberships.join(conn)
    return True


async def _read(ctx: Context) -> None:
    """Read frames until the client leaves or the error budget is spent."""
    conn = ctx.conn
    while not ctx.closing:
        message = await conn.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        frame = message.get("bytes")
        if frame is None:
            frame = message.get("text", "")
        if ctx.throttled(conn.frames, "too many frames"):
            continue
        decoded = decode_client(frame, conn.codec)
        if isinstance(decoded, Invalid):
            ctx.rt.metrics.count_in("invalid")
            ctx.fault(decoded.code, decoded.message, id=decoded.id)
            continue
        await dispatch(ctx, decoded)


def drain_connections(rt: Runtime) -> int:
    """Tell every client to reconnect (spread over a few seconds), then close; return how many."""
    conns = list(rt.connections)
    for conn in conns:
        conn.send(Drain(reconnect_after_ms=random.randrange(RECONNECT_SPREAD_MS)), "drain")
        conn.close_soon(CloseCode.GOING_AWAY, "server draining")
    return len(conns)
