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
from collections.abc import Callable, Coroutine
from typing import Any, Final

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
    RefundAnswer,
    Result,
    SessionStart,
    SessionStop,
    SessionUpdate,
    SessionView,
    SetRates,
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
from metering.outcomes import Code, TabRef, TipResult
from metering.sessions import EndReason, Rate, SessionKind, SessionRef
from metering.tips import TipRequest
from server.connection import Connection
from server.hub import current_tab, tab_view
from server.ratelimit import TokenBucket
from server.runtime import Runtime, runtime
from server.wsproto import KEEPALIVE_EXTENSION

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
        warning_seconds=settings.warning_seconds,
    )
    errors = TokenBucket(ERRORS_PER_S_MAX, ERRORS_BURST_MAX, now_s)
    rt.connections.add(conn)
    rt.no_connections.clear()
    gauge = rt.metrics.connections.labels(str(claims.role))
    gauge.inc()
    try:
        if await _welcome(rt, conn):
            await _read(rt, conn, errors)
    finally:
        await _leave(rt, conn)
        await conn.flush()
        rt.hub.forget(conn)
        if rt.consent is not None:  # h-refcol
            rt.consent.leave(conn)
        rt.connections.discard(conn)
        if not rt.connections:
            rt.no_connections.set()
        gauge.dec()
        await conn.stop()


async def _deny(websocket: WebSocket, rt: Runtime, status: int, code: str, message: str) -> None:
    """Refuse the upgrade with an HTTP answer: one warning line, one metric, a JSON body."""
    rt.metrics.handshakes_refused.labels(code).inc()
    client = websocket.client
    log.warning(
        "WebSocket handshake refused",
        extra={
            "fields": {"code": code, "status": status, "client": client.host if client else None}
        },
    )
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
    except StoreError as exc:
        # Any Redis trouble (unreachable, out of memory, a cluster mid-failover) is the
        # server's, not the client's: a retryable refusal, never a bare 500.
        log.warning("handshake refused: Redis failed", extra={"fields": {"error": repr(exc)}})
        await _deny(websocket, rt, 503, "unavailable", "cannot check tickets now; retry")
        return None
    if isinstance(claims, TicketProblem):
        await _deny(websocket, rt, 401, str(claims), claims.explanation)
        return None
    viewer_ok = claims.role is not Role.VIEWER or is_currency(claims.currency)
    if not is_id(claims.subject) or not viewer_ok:
        await _deny(websocket, rt, 401, str(TicketProblem.MALFORMED), "the ticket's claims")
        return None
    return claims, codec, bool(offered)


async def _leave(rt: Runtime, conn: Connection) -> None:
    """The connection closed: end the viewer's sessions, or withdraw the model's presence."""
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
            _watch_liveness(rt, conn)
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
    if rt.consent is not None:  # h-refcol: her list of refunds waiting for her consent
        rt.consent.join(conn)
    return True


def _refuse(rt: Runtime, conn: Connection, code: ErrorCode, message: str, **extra: object) -> None:
    rt.metrics.count_error(code.value)
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
            rt.metrics.count_in("invalid")
            _refuse(rt, conn, decoded.code, decoded.message, id=decoded.id)
            if errors.take(now_s):
                conn.close_soon(CloseCode.TOO_MANY_ERRORS, "too many errors")
                return
            continue
        match decoded:
            case Tip():
                rt.metrics.count_in("tip")
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
                rt.metrics.count_in("subscribe")
                await _subscribe(rt, conn, decoded)
            case Unsubscribe():
                rt.metrics.count_in("unsubscribe")
                rt.hub.leave_room(conn, decoded.room)
                conn.send(Unsubscribed(room=decoded.room, id=decoded.id), "unsubscribed")
            case Ping():
                rt.metrics.count_in("ping")
                conn.send(Pong(id=decoded.id, server_time_ms=rt.meter.clock.now_ms()), "pong")
            case SessionStart():
                rt.metrics.count_in("session_start")
                await _guarded(rt, conn, decoded.id, _session_start(rt, conn, decoded))
            case SessionStop():
                rt.metrics.count_in("session_stop")
                await _guarded(rt, conn, decoded.id, _session_stop(rt, conn, decoded))
            case SetRates():
                rt.metrics.count_in("set_rates")
                await _guarded(rt, conn, decoded.id, _set_rates(rt, conn, decoded))
            case RefundAnswer():  # h-refcol: the handler lives in server.consent_push
                rt.metrics.count_in("refund_answer")
                if rt.consent is not None:
                    await rt.consent.answer(conn, decoded)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000 + 0.999))


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
        # The tip may have applied with its answer lost: its room event may wait in the outbox.
        rt.meter.rooms.owe(conn.subject)
        _refuse(rt, conn, ErrorCode.UNAVAILABLE, "Redis is unavailable; retry", id=tip.id)
    except StoreError:
        result = None
        log.exception("tip failed", extra={"fields": {"connection": conn.id}})
        _refuse(rt, conn, ErrorCode.INTERNAL_ERROR, "internal error; retry", id=tip.id)
    finally:
        conn.tips_in_flight -= 1
    if result is not None:
        await _answer_tip(rt, conn, tip, result)
    if not conn.tips_in_flight:
        conn.release_tab_push()


async def _answer_tip(rt: Runtime, conn: Connection, tip: Tip, result: TipResult) -> None:
    """Send the one reply a tip gets: a result, or an error with the tab's balance."""
    rt.metrics.count_tip(result.code.value, tip.currency, tip.amount_minor)
    tab_id = conn.tab_id or ""
    view = tab_view(tab_id, conn.currency, result.balance) if tab_id else None
    if result.code.ok:
        if result.event is not None:
            rt.meter.rooms.relay_soon(result.event)
            rt.cap_watch.tip_applied(conn.subject, tab_id, result)
        elif result.code is Code.DUPLICATE:
            # The first try may have applied without being relayed (its answer was lost).
            rt.meter.rooms.owe(conn.subject)
        if view is not None and view.version > conn.tab_version:
            conn.tab_version = view.version
        receipt = TipReceipt(seq=result.seq, applied_at_ms=result.applied_at_ms)
        status = "applied" if result.code is Code.APPLIED else "duplicate"
        await conn.reply(Result(id=tip.id, status=status, tab=view, tip=receipt), "result")
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
    ErrorCode.INSUFFICIENT_CAP: "the first charge does not fit under the cap; raise the cap",
    ErrorCode.SESSIONS_FULL: "this tab funds as many sessions as it may",
    ErrorCode.INVALID_KIND: "kind must be private, spy or cam2cam",
    ErrorCode.MODEL_OFFLINE: "the model is not online",
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
        gap = await rt.hub.join_room(conn, room, message.after)
    except StoreError:
        _refuse(rt, conn, ErrorCode.UNAVAILABLE, "cannot follow the room now; retry", id=message.id)
        return
    conn.send(Subscribed(room=room, id=message.id, gap=gap), "subscribed")
    rt.hub.start_catch_up(conn, room)


def drain_connections(rt: Runtime) -> int:
    """Tell every client to reconnect (spread over a few seconds), then close; return how many."""
    conns = list(rt.connections)
    for conn in conns:
        conn.send(Drain(reconnect_after_ms=random.randrange(RECONNECT_SPREAD_MS)), "drain")
        conn.close_soon(CloseCode.GOING_AWAY, "server draining")
    return len(conns)


async def _guarded(
    rt: Runtime, conn: Connection, message_id: str, work: Coroutine[Any, Any, None]
) -> None:
    """Run a handler; answer ``unavailable`` or ``internal_error`` if Redis fails under it."""
    try:
        await work
    except StoreUnavailable:
        _refuse(rt, conn, ErrorCode.UNAVAILABLE, "Redis is unavailable; retry", id=message_id)
    except StoreError:
        log.exception("request failed", extra={"fields": {"connection": conn.id}})
        _refuse(rt, conn, ErrorCode.INTERNAL_ERROR, "internal error; retry", id=message_id)


_SESSION_ERRORS: Final = {
    Code.INVALID_ID: ErrorCode.INVALID_ID,
    Code.INVALID_KIND: ErrorCode.INVALID_KIND,
    Code.TAB_NOT_FOUND: ErrorCode.NO_OPEN_TAB,
    Code.TAB_NOT_OPEN: ErrorCode.TAB_NOT_OPEN,
    Code.CURRENCY_MISMATCH: ErrorCode.CURRENCY_MISMATCH,
    Code.SESSIONS_FULL: ErrorCode.SESSIONS_FULL,
    Code.LINES_FULL: ErrorCode.LINES_FULL,
    Code.INSUFFICIENT_CAP: ErrorCode.INSUFFICIENT_CAP,
    Code.SESSION_NOT_FOUND: ErrorCode.SESSION_NOT_FOUND,
    Code.AMOUNT_OUT_OF_RANGE: ErrorCode.AMOUNT_OUT_OF_RANGE,
    Code.INVALID_AMOUNT: ErrorCode.INVALID_AMOUNT,
    Code.INVALID_FIELD: ErrorCode.INVALID_FIELD,
}


async def _session_view(rt: Runtime, customer: str, session_id: str) -> SessionView | None:
    view = await rt.meter.sessions.read(customer, session_id)
    if view is None:
        return None
    ended = view.state == "ended"
    return SessionView(
        session_id=session_id,
        room=view.room,
        kind=view.kind,
        state=view.state,
        rate_per_minute_minor=view.rate_per_minute_minor,
        minimum_s=view.minimum_s,
        started_at_ms=view.started_at_ms,
        seconds=view.billed_s,
        amount_minor=view.amount_minor,
        end_reason=view.reason if ended else None,
        ended_at_ms=view.ended_at_ms if ended else None,
    )


def _watch_liveness(rt: Runtime, conn: Connection) -> None:
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


def _tell_ended(rt: Runtime, conn: Connection) -> Callable[[SessionRef, str], None]:
    """What the scheduler calls when a session of ``conn`` ends: push it to the viewer."""

    def ended(ref: SessionRef, reason: str) -> None:
        conn.sessions.pop(ref.session_id, None)
        _watch_liveness(rt, conn)

        async def push() -> None:
            view = await _session_view(rt, ref.customer, ref.session_id)
            if view is not None:
                conn.send(SessionUpdate(session=view), "session")

        task = asyncio.get_running_loop().create_task(push())
        _PUSHES.add(task)
        task.add_done_callback(_PUSHES.discard)

    return ended


_PUSHES: set[asyncio.Task[None]] = set()


async def _session_start(rt: Runtime, conn: Connection, message: SessionStart) -> None:
    if conn.role is not Role.VIEWER:
        _refuse(rt, conn, ErrorCode.NOT_ALLOWED, "only viewers start sessions", id=message.id)
        return
    sessions = rt.meter.sessions
    if not (await sessions.present([message.room]))[message.room]:
        _refuse(rt, conn, ErrorCode.MODEL_OFFLINE, "the model is not online", id=message.id)
        return
    tab_id = conn.tab_id or await rt.meter.tabs.find_open(conn.subject, conn.currency)
    result = None
    for _ in range(2):  # the connection's tab may have been settled and a new one opened
        if tab_id is None:
            break
        result = await sessions.start(
            TabRef(conn.subject, tab_id),
            session_id=message.id,
            room=message.room,
            kind=message.kind,
            currency=conn.currency,
            owner=rt.scheduler.owner,
        )
        if result.code not in (Code.TAB_NOT_FOUND, Code.TAB_NOT_OPEN):
            break
        fresh = await rt.meter.tabs.find_open(conn.subject, conn.currency)
        if fresh is None or fresh == tab_id:
            break
        tab_id = fresh
    if result is None or tab_id is None:
        _refuse(rt, conn, ErrorCode.NO_OPEN_TAB, "the customer has no open tab", id=message.id)
        return
    conn.tab_id = tab_id
    view = tab_view(tab_id, conn.currency, result.balance)
    if not result.code.ok:
        code = _SESSION_ERRORS.get(result.code, ErrorCode.INTERNAL_ERROR)
        needed = result.needed_minor if code is ErrorCode.INSUFFICIENT_CAP else None
        _refuse(rt, conn, code, _explain(code), id=message.id, tab=view, needed_minor=needed)
        return
    ref = SessionRef(conn.subject, message.id, tab_id)
    session = await _session_view(rt, conn.subject, message.id)
    if session is not None and session.state == "running":
        conn.sessions[message.id] = ref
        rt.scheduler.add(ref, message.room, _tell_ended(rt, conn))
        _watch_liveness(rt, conn)
    await rt.meter.rooms.relay_pending(conn.subject)
    status = "applied" if result.code is Code.APPLIED else "duplicate"
    conn.send(Result(id=message.id, status=status, tab=view, session=session), "result")


async def _session_stop(rt: Runtime, conn: Connection, message: SessionStop) -> None:
    sessions = rt.meter.sessions
    ref: SessionRef | None = None
    if conn.role is Role.VIEWER:
        ref = conn.sessions.get(message.session_id)
        if ref is None and is_id(message.session_id):
            # A session of this customer started on another connection (one that dropped, or
            # another device): stop it, or tell how it ended.
            found = await sessions.read(conn.subject, message.session_id)
            if found is not None and found.state == "ended":
                ended = await _session_view(rt, conn.subject, message.session_id)
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
        _refuse(rt, conn, ErrorCode.SESSION_NOT_FOUND, "no such session here", id=message.id)
        return
    if (ref.customer, ref.session_id) in rt.scheduler.owned:
        await rt.scheduler.end(ref, EndReason.STOPPED)
    else:
        # Another process bills it; ending it in Redis is enough: its next tick lets it go.
        await sessions.end(ref, EndReason.STOPPED)
        await rt.meter.rooms.relay_pending(ref.customer)
    session = await _session_view(rt, ref.customer, ref.session_id)
    conn.send(Result(id=message.id, status="applied", session=session), "result")


async def _set_rates(rt: Runtime, conn: Connection, message: SetRates) -> None:
    if conn.role is not Role.MODEL:
        _refuse(
            rt, conn, ErrorCode.NOT_ALLOWED, "only the room's model sets its prices", id=message.id
        )
        return
    kinds = {kind.value for kind in SessionKind}
    if not set(message.rates) <= kinds:
        _refuse(rt, conn, ErrorCode.INVALID_KIND, f"kinds are {sorted(kinds)}", id=message.id)
        return
    rates = {
        SessionKind(kind): Rate(rate.rate_per_minute_minor, rate.minimum_s)
        for kind, rate in message.rates.items()
    }
    code = await rt.meter.sessions.set_rates(conn.subject, rates)
    if code is not Code.APPLIED:
        error = _SESSION_ERRORS.get(code, ErrorCode.INVALID_FIELD)
        _refuse(rt, conn, error, "prices must stay within the site's bounds", id=message.id)
        return
    conn.send(Result(id=message.id, status="applied"), "result")
