"""``subscribe``, ``unsubscribe`` and ``ping``: following rooms' events, and keep-alive."""

from __future__ import annotations

from clients.protocol import (
    ErrorCode,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
)
from clients.tickets import Role
from metering.errors import StoreError
from server.handlers.context import Context


async def handle_subscribe(ctx: Context, message: Subscribe) -> None:
    """Follow a room's events from the client's cursor (a viewer any room, others their own)."""
    rt, conn = ctx.rt, ctx.conn
    room = message.room
    if conn.role is not Role.VIEWER and room != conn.subject:
        ctx.refuse(ErrorCode.NOT_ALLOWED, "this ticket follows its own room", id=message.id)
        return
    if room not in conn.cursors and len(conn.cursors) >= rt.settings.subscriptions_max:
        ctx.refuse(ErrorCode.SUBSCRIPTIONS_FULL, "unsubscribe from a room first", id=message.id)
        return
    if room in conn.cursors:
        rt.hub.leave_room(conn, room)
    try:
        gap = await rt.hub.join_room(conn, room, message.after)
    except StoreError:
        ctx.refuse(ErrorCode.UNAVAILABLE, "cannot follow the room now; retry", id=message.id)
        return
    conn.send(Subscribed(room=room, id=message.id, gap=gap), "subscribed")
    rt.hub.start_catch_up(conn, room)


async def handle_unsubscribe(ctx: Context, message: Unsubscribe) -> None:
    """Stop following a room."""
    ctx.rt.hub.leave_room(ctx.conn, message.room)
    ctx.conn.send(Unsubscribed(room=message.room, id=message.id), "unsubscribed")


async def handle_ping(ctx: Context, message: Ping) -> None:
    """Answer with the server's clock (latency, keep-alive from browsers)."""
    ctx.conn.send(Pong(id=message.id, server_time_ms=ctx.rt.meter.clock.now_ms()), "pong")
