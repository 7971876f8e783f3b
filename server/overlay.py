"""``POST /overlay/ticket``: a broadcast overlay trades its room's feed token for a ticket.

The secret in a broadcast overlay's link is the room's event-feed token (``POST
/v1/rooms/{room}/feed-token``). This route exchanges it for a ticket of one ``broadcast``
WebSocket connection, so an overlay follows the room over the WebSocket — amounts in minor
units with their currency, resumed after the last event shown — with nothing more secret than
the feed token it already holds. It is always on (unlike the demo backend of
:mod:`server.demo_api`): the token is its credential.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clients.tickets import Role
from server.api import bounds_of, feed_token_valid, json_body, route
from server.api_contract import FEED_TOKEN, ROOM, ApiError
from server.runtime import Runtime

#: Life of a broadcast ticket an overlay gets for its feed token (one connection each).
OVERLAY_TICKET_TTL_S: Final = 60
#: Largest body the exchange reads (a room and a token).
OVERLAY_BODY_BYTES_MAX: Final = 2_048


async def overlay_ticket(request: Request, rt: Runtime) -> Response:
    """``POST /overlay/ticket`` ``{"room", "token"}``: a ticket for one ``broadcast``
    connection following ``room``, for the holder of the room's current feed token."""
    body = await json_body(request, OVERLAY_BODY_BYTES_MAX)
    room, token = body.get("room"), body.get("token")
    # One answer for every refusal (a malformed room, token or a wrong one): nothing to probe.
    valid = (
        ROOM.accepts(room, bounds_of(rt))
        and FEED_TOKEN.accepts(token, bounds_of(rt))
        and await feed_token_valid(rt, str(room), str(token))
    )
    if not valid:
        raise ApiError(401, "invalid_token", "unknown room or feed token")
    ticket, expires_at_ms = rt.tickets.mint(
        role=Role.BROADCAST, subject=str(room), ttl_ms=OVERLAY_TICKET_TTL_S * 1000
    )
    return JSONResponse({"ticket": ticket, "expires_at_ms": expires_at_ms}, status_code=201)


def routes() -> list[Route]:
    """The overlay's ticket exchange."""
    return [route("POST", "/overlay/ticket", "overlay_ticket", overlay_ticket, authenticated=False)]
