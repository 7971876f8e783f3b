"""Admission to ``/ws``: everything checked before a connection is accepted, and its budgets.

A refused client never gets a socket: the server's state (draining, full), the browser's
Origin, the subprotocol and the ticket (signature, issuer, audience, expiry, single use) are
checked, and a refusal is an HTTP answer with a JSON body ``{"error": {"code": …, "message": …}}``
(codes in ``docs/protocol.md``). An admitted client gets a :class:`~server.connection.Connection`
with its budgets: its tip and frame rates, its bounded send queue, and its error budget (held by
its handlers' :class:`~server.handlers.context.Context`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Final

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from clients.protocol import Codec
from clients.tickets import Claims, Role, TicketProblem
from metering.errors import StoreError
from metering.keys import is_id
from metering.money import is_currency
from server.connection import Connection
from server.handlers.context import Context
from server.ratelimit import TokenBucket
from server.runtime import Runtime

log = logging.getLogger("tipmeter.ws")

#: Invalid or rate-limited frames a connection may send per second on average, and in a burst,
#: before it is closed (4029).
ERRORS_PER_S_MAX: Final = 1.0
ERRORS_BURST_MAX: Final = 20.0


@dataclass(frozen=True, slots=True)
class Admitted:
    """A handshake that passed: who the ticket speaks for, and the codec to speak."""

    claims: Claims
    codec: Codec
    #: Whether the client offered subprotocols (then the accept names the chosen one).
    offered: bool


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


async def admit(rt: Runtime, websocket: WebSocket) -> Admitted | None:
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
    return Admitted(claims, codec, bool(offered))


async def accept(rt: Runtime, websocket: WebSocket, admitted: Admitted) -> Context:
    """Accept the admitted handshake; the connection gets its budgets, its handlers a context."""
    codec = admitted.codec
    await websocket.accept(subprotocol=codec.subprotocol if admitted.offered else None)
    settings = rt.settings
    now_s = asyncio.get_running_loop().time()
    conn = Connection(
        websocket,
        codec,
        admitted.claims,
        secrets.token_urlsafe(9),
        send_queue_max=settings.send_queue_frames_max,
        tips=TokenBucket(settings.tips_per_s_max, settings.tips_burst_max, now_s),
        frames=TokenBucket(settings.frames_per_s_max, 2 * settings.frames_per_s_max, now_s),
        metrics=rt.metrics,
        warning_seconds=settings.warning_seconds,
    )
    return Context(rt, conn, TokenBucket(ERRORS_PER_S_MAX, ERRORS_BURST_MAX, now_s))
