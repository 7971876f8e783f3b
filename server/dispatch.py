"""Routing of decoded client messages to their handlers: one table, one entry per message.

Theory of operation. :mod:`server.ws` admits a connection (:mod:`server.admission`), welcomes
it, and reads its frames; each frame is counted against the connection's frame rate, decoded by
:mod:`clients.protocol`, and handed to :func:`dispatch`, which counts it, looks its class up in
:data:`HANDLERS` and runs the handler. A handler answers every state-changing message exactly
once, through its :class:`~server.handlers.context.Context`: ``ctx.refuse`` for a business
refusal, ``ctx.fault`` for a frame the client should not have sent (charged to the connection's
error budget), ``ctx.throttled`` for a per-connection rate, ``ctx.on_current_tab`` to act on the
customer's current tab, ``ctx.push_soon`` for a later push. If Redis fails under a handler,
:func:`dispatch` answers ``unavailable`` (or ``internal_error``) for it.

How to add a handler:

1. Declare the message in :mod:`clients.protocol` (a class the decoder returns).
2. Write ``async def handle_<name>(ctx: Context, message: <Message>) -> None`` in a module of
   :mod:`server.handlers` (a new module for a new concern): check the role first, answer once.
3. Add one line to :data:`HANDLERS` below: ``<Message>: Route("<wire type>", handle_<name>)``;
   the wire type is the label of the message's metrics (``tipmeter_messages_received``).
4. Test it end to end over a real socket (tests/server/test_ws_e2e.py shows how).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from clients.protocol import (
    Buy,
    ClientMessage,
    Decline,
    ErrorCode,
    Fulfil,
    Ping,
    RefundAnswer,
    SessionStart,
    SessionStop,
    SetRates,
    Subscribe,
    Tip,
    Unsubscribe,
)
from metering.errors import StoreError, StoreUnavailable
from server.handlers.context import Context
from server.handlers.purchases import handle_buy, handle_decline, handle_fulfil
from server.handlers.refunds import handle_refund_answer
from server.handlers.rooms import handle_ping, handle_subscribe, handle_unsubscribe
from server.handlers.sessions import (
    handle_session_start,
    handle_session_stop,
    handle_set_rates,
)
from server.handlers.tips import handle_tip

log = logging.getLogger("tipmeter.ws")

#: A handler takes the message its route names (typed in its own signature).
Handler = Callable[[Context, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message goes: its wire type (the metrics' label) and its handler."""

    name: str
    handle: Handler


#: Every message a client may send, and its handler.
HANDLERS: Final[Mapping[type[ClientMessage], Route]] = {
    Tip: Route("tip", handle_tip),
    Subscribe: Route("subscribe", handle_subscribe),
    Unsubscribe: Route("unsubscribe", handle_unsubscribe),
    Ping: Route("ping", handle_ping),
    SessionStart: Route("session_start", handle_session_start),
    SessionStop: Route("session_stop", handle_session_stop),
    SetRates: Route("set_rates", handle_set_rates),
    RefundAnswer: Route("refund_answer", handle_refund_answer),
    Buy: Route("buy", handle_buy),  # purchases (issue 17)
    Fulfil: Route("fulfil", handle_fulfil),
    Decline: Route("decline", handle_decline),
}


async def dispatch(ctx: Context, message: ClientMessage) -> None:
    """Run the handler of ``message``; answer ``unavailable`` or ``internal_error`` for it if
    Redis fails under the handler."""
    route = HANDLERS.get(type(message))
    if route is None:  # a message declared without a handler: the server's mistake
        log.error("no handler", extra={"fields": {"message": type(message).__name__}})
        ctx.refuse(ErrorCode.INTERNAL_ERROR, "internal error", id=message.id)
        return
    ctx.rt.metrics.count_in(route.name)
    try:
        await route.handle(ctx, message)
    except StoreUnavailable:
        ctx.refuse(ErrorCode.UNAVAILABLE, "Redis is unavailable; retry", id=message.id)
    except StoreError:
        log.exception("request failed", extra={"fields": {"connection": ctx.conn.id}})
        ctx.refuse(ErrorCode.INTERNAL_ERROR, "internal error; retry", id=message.id)
