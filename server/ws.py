"""The WebSocket endpoint ``/ws``: admission, the welcome, and one reader loop per connection.

Admission happens before the connection is accepted, so a refused client never gets a socket:
the server's state (draining, full), the browser's Origin, the subprotocol and the ticket
(signature, issuer, audience, expiry, single use) are checked, and a refusal is an HTTP answer
with a JSON body ``{"error": {"code": …, "message": …}}`` (codes in ``docs/protocol.md``).

After the ``welcome``, the reader loop decodes each frame with :mod:`clients.protocol`, applies
the connection's rate limits and answers every state-changing message exactly once. Frames to
the client go through the connection's bounded queue (:mod:`server.connection`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import Final

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from clients.protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    Codec,
    Drain,
    Error,
    ErrorCode,
    Invalid,
    Ping,
    Pong,
    Result,
    Subscribe,
    Subscribed,
    TabView,
    Tip,
    TipReceipt,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    decode_client,
)
from clients.tickets import Claims, Role, TicketProblem
from metering.errors import StoreError, StoreUnavailable
from metering.keys import is_id
from metering.money import is_currency
from metering.outcomes import Balance, Code, TabRef, TipResult
from metering.tips import TipRequest
from server.connection import Connection
from server.hub import current_tab
from server.ratelimit import TokenBucket
from server.runtime import Runtime, runtime

log = logging.getLogger("tipmeter.ws")

#: Invalid or rate-limited frames a connection may send per second on average, and in a burst,
#: before it is closed (4029).
ERRORS_PER_S_MAX: Final = 1.0
ERRORS_BURST_MAX: Final = 20.0
#: Clients told to reconnect spread their reconnects over this window.
RECONNECT_SPREAD_MS: Final = 5_000

#: The money core's refusals of a tip, as protocol error codes.
_TIP_ERRORS: Final = {
    Code.INVALID_ID: ErrorCode.INVALID_ID,
    Code.INVALID_AMOUNT: ErrorCode.INVALID_AMOUNT,
    Code.INVALID_CURRENCY: ErrorCode.INVALID_CURRENCY,
    Code.INVALID_FIELD: ErrorCode.INVALID_FIELD,
    Code.AMOUNT_OUT_OF_RANGE: ErrorCode.AMOUNT_OUT_OF_RANGE,
    Code.TAB_NOT_FOUND: ErrorCode.NO_OPEN_TAB,
    Code.TAB_NOT_OPEN: ErrorCode.TAB_NOT_OPEN,
    Code.CURRENCY_MISMATCH: ErrorCode.CURRENCY_MISMATCH,
    Code.OVER_CAP: ErrorCode.OVER_CAP,
    Code.LINES_FULL: ErrorCode.LINES_FULL,
    Code.BUSY: ErrorCode.BUSY,
    Code.ID_REUSED: ErrorCode.ID_REUSED,
}


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one WebSocket connection from handshake to close."""
    rt = runtime(websocket)
    admitted = await _admit(rt, websocket)
    if admitted is None:
        return
    claims, codec, offered = admitted
    await websocket.accept(subprotocol=codec.subprotocol if offered else None)
    settings = rt.settings
    now_s = asyncio.get_running_loop().time()
    conn = Connection(
        websocket,
        codec,
        claims,
        secrets.token_urlsafe(9),
        send_queue_max=settings.send_queue_frames_max,
        tips=TokenBucket(settings.tips_per_s_max, settings.tips_burst_max, now_s),
        frames=TokenBucket(settings.frames_per_s_max, 2 * settings.frames_per_s_max, now_s),
        metrics=rt.metrics,
    )
    errors = TokenBucket(ERRORS_PER_S_MAX, ERRORS_BURST_MAX, now_s)
    rt.connections.add(conn)
    rt.no_connections.clear()
    gauge = rt.metrics.connections.labels(str(claims.role))
    gauge.inc()
    conn.start()
    try:
        if await _welcome(rt, conn):
            await _read(rt, conn, errors)
    finally:
        rt.hub.forget(conn)
        rt.connections.discard(conn)
        if not rt.connections:
            rt.no_connections.set()
        gauge.dec()
        await conn.stop()


async def _deny(websocket: WebSocket, rt: Runtime, status: int, code: str, message: str) -> None:
    rt.metrics.handshakes_refused.labels(code).inc()
    body = {"error": {"code": code, "message": message}}
    await websocket.send_denial_response(JSONResponse(body, status_code=status))


async def _admit(rt: Runtime, websocket: WebSocket) -> tuple[Claims, Codec, bool] | None:
    """Check everything before accepting; deny with a JSON error and return None on refusal."""
    settings = rt.settings
    if rt.draining:
        await _deny(websocket, rt, 503, "draining", "this server is shutting down; reconnect")
        return None
    if len(rt.connections) >= settings.connections_max:
        await _deny(websocket, rt, 503, "server_full", "too many connections; try another server")
        return None
    origin = websocket.headers.get("origin")
    if origin is not None and origin not in settings.origins:
        await _deny(websocket, rt, 403, "origin_not_allowed", f"origin {origin!r} is not allowed")
        return None
    offered = list(websocket.scope.get("subprotocols", []))
    codec = Codec.negotiate(offered)
    if codec is None:
        await _deny(
            websocket,
            rt,
            400,
            "subprotocol_unsupported",
            f"speak one of {[c.subprotocol for c in Codec]}",
        )
        return None
    try:
        claims = await rt.tickets.admit(websocket.query_params.get("ticket"))
    except StoreUnavailable:
        await _deny(websocket, rt, 503, "unavailable", "cannot check tickets now; retry")
        return None
    if isinstance(claims, TicketProblem):
        await _deny(websocket, rt, 401, str(claims), "the ticket is not valid for this server")
        return None
    viewer_ok = claims.role is not Role.VIEWER or is_currency(claims.currency)
    if not is_id(claims.subject) or not viewer_ok:
        await _deny(websocket, rt, 401, str(TicketProblem.MALFORMED), "the ticket's claims")
        return None
    return claims, codec, bool(offered)


def _limits(rt: Runtime) -> dict[str, int]:
    s = rt.settings
    return {
        "frame_bytes_max": s.frame_bytes_max,
        "tips_per_s_max": s.tips_per_s_max,
        "tips_burst_max": s.tips_burst_max,
        "subscriptions_max": s.subscriptions_max,
        "send_queue_frames_max": s.send_queue_frames_max,
    }


async def _welcome(rt: Runtime, conn: Connection) -> bool:
    """Send the welcome (the viewer's tab, or the model's earnings); False if Redis is away."""
    tab: TabView | None = None
    earnings: dict[str, int] | None = None
    try:
        if conn.role is Role.VIEWER:
            await rt.hub.follow_customer(conn)
            tab = await current_tab(rt.meter, conn.subject, conn.currency)
            if tab is not None:
                conn.tab_id, conn.tab_version = tab.tab_id, tab.version
        elif conn.role is Role.MODEL:
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
    return True


def _refuse(rt: Runtime, conn: Connection, code: ErrorCode, message: str, **extra: object) -> None:
    rt.metrics.errors.labels(str(code)).inc()
    conn.send(Error(code=str(code), message=message, **extra), "error")  # type: ignore[arg-type]


async def _read(rt: Runtime, conn: Connection, errors: TokenBucket) -> None:
    loop = asyncio.get_running_loop()
    codec = conn.codec
    while True:
        message = await conn.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        frame = message.get("bytes")
        if frame is None:
            frame = message.get("text", "")
        now_s = loop.time()
        wait_s = conn.frames.take(now_s)
        if wait_s:
            _refuse(rt, conn, ErrorCode.RATE_LIMITED, "too many frames", retry_after_ms=_ms(wait_s))
            if errors.take(now_s):
                conn.close_soon(CloseCode.TOO_MANY_ERRORS, "too many errors")
                return
            continue
        decoded = decode_client(frame, codec)
        if isinstance(decoded, Invalid):
            rt.metrics.messages_in.labels("invalid").inc()
            _refuse(rt, conn, decoded.code, decoded.message, id=decoded.id)
            if errors.take(now_s):
                conn.close_soon(CloseCode.TOO_MANY_ERRORS, "too many errors")
                return
            continue
        match decoded:
            case Tip():
                rt.metrics.messages_in.labels("tip").inc()
                wait_s = conn.tips.take(now_s)
                if wait_s:
                    _refuse(
                        rt,
                        conn,
                        ErrorCode.RATE_LIMITED,
                        "too many tips",
                        id=decoded.id,
                        retry_after_ms=_ms(wait_s),
                    )
                    if errors.take(now_s):
                        conn.close_soon(CloseCode.TOO_MANY_ERRORS, "too many errors")
                        return
                    continue
                await _tip(rt, conn, decoded)
            case Subscribe():
                rt.metrics.messages_in.labels("subscribe").inc()
                await _subscribe(rt, conn, decoded)
            case Unsubscribe():
                rt.metrics.messages_in.labels("unsubscribe").inc()
                rt.hub.leave_room(conn, decoded.room)
                conn.send(Unsubscribed(room=decoded.room, id=decoded.id), "unsubscribed")
            case Ping():
                rt.metrics.messages_in.labels("ping").inc()
                conn.send(Pong(id=decoded.id, server_time_ms=rt.meter.clock.now_ms()), "pong")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000 + 0.999))


def _view(tab_id: str, currency: str, balance: Balance) -> TabView | None:
    if balance.state is None:
        return None
    return TabView(
        tab_id=tab_id,
        currency=currency,
        state=str(balance.state),
        cap_minor=balance.cap_minor,
        accrued_minor=balance.accrued_minor,
        version=balance.version,
    )


async def _tip(rt: Runtime, conn: Connection, tip: Tip) -> None:
    """Apply a tip and answer it exactly once."""
    if conn.role is not Role.VIEWER:
        _refuse(rt, conn, ErrorCode.NOT_ALLOWED, "only viewers tip", id=tip.id)
        return
    if tip.currency != conn.currency:
        _refuse(
            rt,
            conn,
            ErrorCode.CURRENCY_MISMATCH,
            f"this connection spends from a {conn.currency} tab",
            id=tip.id,
        )
        return
    request = TipRequest(
        tip_id=tip.id,
        room=tip.room,
        amount_minor=tip.amount_minor,
        currency=tip.currency,
        viewer_name=conn.claims.name[: rt.meter.limits.viewer_name_chars_max],
        anonymous=tip.anonymous,
        message=tip.message,
    )
    conn.tips_in_flight += 1
    try:
        result = await _apply(rt, conn, request)
    except StoreUnavailable:
        result = None
        _refuse(rt, conn, ErrorCode.UNAVAILABLE, "Redis is unavailable; retry", id=tip.id)
    except StoreError:
        result = None
        log.exception("tip failed", extra={"fields": {"connection": conn.id}})
        _refuse(rt, conn, ErrorCode.INTERNAL_ERROR, "internal error; retry", id=tip.id)
    finally:
        conn.tips_in_flight -= 1
    if result is not None:
        _answer_tip(rt, conn, tip, result)
    if not conn.tips_in_flight:
        conn.release_tab_push()


def _answer_tip(rt: Runtime, conn: Connection, tip: Tip, result: TipResult) -> None:
    """Send the one reply a tip gets: a result, or an error with the tab's balance."""
    rt.metrics.tips.labels(str(result.code)).inc()
    tab_id = conn.tab_id or ""
    view = _view(tab_id, conn.currency, result.balance) if tab_id else None
    if result.code.ok:
        if result.event is not None:
            rt.metrics.tipped_minor.labels(tip.currency).inc(tip.amount_minor)
            rt.meter.rooms.relay_soon(result.event)
        if view is not None and view.version > conn.tab_version:
            conn.tab_version = view.version
        receipt = TipReceipt(seq=result.seq, applied_at_ms=result.applied_at_ms)
        status = "applied" if result.code is Code.APPLIED else "duplicate"
        conn.send(Result(id=tip.id, status=status, tab=view, tip=receipt), "result")
        return
    code = _TIP_ERRORS.get(result.code, ErrorCode.INTERNAL_ERROR)
    _refuse(rt, conn, code, _explain(code), id=tip.id, tab=view)


async def _apply(rt: Runtime, conn: Connection, request: TipRequest) -> TipResult:
    """Apply against the connection's tab; if that tab is gone or settling, look for the
    customer's current open tab once (it may have been settled and a new one opened)."""
    first: TipResult | None = None
    if conn.tab_id is not None:
        first = await rt.meter.tips.apply(TabRef(conn.subject, conn.tab_id), request)
        if first.code not in (Code.TAB_NOT_FOUND, Code.TAB_NOT_OPEN):
            return first
    fresh = await rt.meter.tabs.find_open(conn.subject, conn.currency)
    if fresh is None or fresh == conn.tab_id:
        return first or TipResult(code=Code.TAB_NOT_FOUND, tip_id=request.tip_id)
    conn.tab_id, conn.tab_version = fresh, 0
    return await rt.meter.tips.apply(TabRef(conn.subject, fresh), request)


_EXPLANATIONS: Final = {
    ErrorCode.NO_OPEN_TAB: "the customer has no open tab in this currency",
    ErrorCode.TAB_NOT_OPEN: "the tab is being settled; nothing more can be spent on it",
    ErrorCode.OVER_CAP: "the tip does not fit under the tab's cap; raise the cap",
    ErrorCode.AMOUNT_OUT_OF_RANGE: "the amount is outside the allowed tip range",
    ErrorCode.ID_REUSED: "this id was used for another tip",
    ErrorCode.LINES_FULL: "the tab holds as many lines as it may; settle it",
    ErrorCode.BUSY: "the server is catching up; retry with the same id",
}


def _explain(code: ErrorCode) -> str:
    return _EXPLANATIONS.get(code, str(code).replace("_", " "))


async def _subscribe(rt: Runtime, conn: Connection, message: Subscribe) -> None:
    room = message.room
    if conn.role is not Role.VIEWER and room != conn.subject:
        _refuse(rt, conn, ErrorCode.NOT_ALLOWED, "this ticket follows its own room", id=message.id)
        return
    if room not in conn.cursors and len(conn.cursors) >= rt.settings.subscriptions_max:
        _refuse(
            rt, conn, ErrorCode.SUBSCRIPTIONS_FULL, "unsubscribe from a room first", id=message.id
        )
        return
    if room in conn.cursors:
        rt.hub.leave_room(conn, room)
    try:
        gap, backlog = await rt.hub.join_room(conn, room, message.after)
    except StoreError:
        _refuse(rt, conn, ErrorCode.UNAVAILABLE, "cannot follow the room now; retry", id=message.id)
        return
    conn.send(Subscribed(room=room, id=message.id, gap=gap), "subscribed")
    rt.hub.deliver_backlog(conn, room, backlog)


def drain_connections(rt: Runtime) -> int:
    """Tell every client to reconnect (spread over a few seconds), then close; return how many."""
    conns = list(rt.connections)
    for conn in conns:
        conn.send(Drain(reconnect_after_ms=random.randrange(RECONNECT_SPREAD_MS)), "drain")
        conn.close_soon(CloseCode.GOING_AWAY, "server draining")
    return len(conns)
