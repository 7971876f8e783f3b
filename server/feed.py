"""The event feed for existing broadcast tools: long-poll JSON in the Chaturbate Events API's
shape, so a tool written for that API works by changing its base URL.

``GET /events/{room}/{token}/?i=<event id>&timeout=<seconds>`` answers::

    {"events": [{"method": "tip", "id": "<event id>",
                 "object": {"broadcaster": "<room>",
                            "user": {"username": …, "inFanclub": false, "hasTokens": true,
                                     "isMod": false, "recentTips": "none", "gender": "",
                                     "subgender": ""},
                            "tip": {"tokens": <int>, "isAnon": <bool>, "message": "…",
                                    "tipId": "<the tip's id>"}}}],
     "nextUrl": "<base>/events/<room>/<token>/?i=<last id>&timeout=<seconds>"}

with the events after ``i`` (without ``i``: only events that arrive from now on; ``i=0-0``:
from the room's start, every event it still keeps). When there are
none, the request waits up to ``timeout`` seconds (capped by ``TIPMETER_FEED_TIMEOUT_S_MAX``)
for one. Following ``nextUrl`` resumes exactly after the last event returned. ``tokens`` is the
tip's amount in minor units divided by ``TIPMETER_FEED_MINOR_PER_TOKEN``, rounded down. Events
other than tips, and tips worth less than one token, advance the cursor but are not listed (the
shape has no place for them: its clients refuse ``"tokens": 0``).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metering import rooms
from metering.keys import is_id
from server.api import feed_token_valid, route
from server.api_contract import FEED_CURSOR, FEED_TIMEOUT, FEED_TIMEOUT_S_DEFAULT, ApiError
from server.runtime import Runtime

#: Events one feed answer lists at most.
FEED_EVENTS_MAX: Final = 100


def _user(event: rooms.RoomEvent) -> dict[str, Any]:
    anonymous = bool(event.data.get("anon"))
    name = event.data.get("name") or ""
    return {
        "username": "anonymous" if anonymous or not name else str(name),
        "inFanclub": False,
        "hasTokens": True,
        "isMod": False,
        "recentTips": "none",
        "gender": "",
        "subgender": "",
    }


def _tip_message(event: rooms.RoomEvent) -> str:
    """A tip's message; a catalog purchase (issue 17) is a tip whose message names the item
    (the Chaturbate-style tip menu: "Dance: the slow one")."""
    message = str(event.data.get("message", ""))
    if event.event_type != "purchase":
        return message
    name = str(event.data.get("item_name", ""))
    return f"{name}: {message}" if message else name


def feed_event(room: str, event: rooms.RoomEvent, minor_per_token: int) -> dict[str, Any] | None:
    """One room event in the feed's shape, or None for events the shape cannot carry: events
    other than tips and purchases (shown as tips), and tips worth less than one token
    (Chaturbate-style clients refuse ``"tokens": 0`` and would stall on that page; rounding up
    would credit tokens never paid)."""
    if event.event_type not in ("tip", "purchase"):
        return None
    tokens = int(event.data.get("amount", 0)) // minor_per_token
    if tokens < 1:
        return None
    return {
        "method": "tip",
        "id": event.event_id,
        "object": {
            "broadcaster": room,
            "user": _user(event),
            "tip": {
                "tokens": tokens,
                "isAnon": bool(event.data.get("anon")),
                "message": _tip_message(event),
                # Not in the Chaturbate shape (its tools ignore it): the client-minted tip id
                # (a purchase's id), to match a feed event with the tip it reports.
                "tipId": str(event.data.get("tip_id", event.data.get("purchase_id", ""))),
            },
        },
    }


async def events_feed(request: Request, rt: Runtime) -> Response:
    """Serve one long-poll of a room's events."""
    room, token = request.path_params["room"], request.path_params["token"]
    if not is_id(room) or not await feed_token_valid(rt, room, token):
        raise ApiError(401, "invalid_token", "unknown room or feed token")
    raw_timeout = FEED_TIMEOUT.check(
        request.query_params.get("timeout", str(FEED_TIMEOUT_S_DEFAULT))
    )
    timeout_s = min(int(raw_timeout), rt.settings.feed_timeout_s_max)
    cursor = request.query_params.get("i")
    if cursor is not None:
        FEED_CURSOR.check(cursor)
    if cursor is None:
        cursor = await rt.meter.rooms.latest_id(room) or "0-0"
    found: list[rooms.RoomEvent] = []

    async def read() -> bool:
        found[:] = (await rt.meter.rooms.read(room, after=cursor, count=FEED_EVENTS_MAX)).events
        return bool(found)

    if not await read() and timeout_s > 0:
        await rt.hub.wait_for_event(room, timeout_s, read)
        if not found:
            await read()
    minor_per_token = rt.settings.feed_minor_per_token
    events = [e for e in (feed_event(room, ev, minor_per_token) for ev in found) if e is not None]
    last = found[-1].event_id if found else cursor
    next_url = f"{rt.settings.base_url}/events/{room}/{token}/?i={last}&timeout={timeout_s}"
    return JSONResponse({"events": events, "nextUrl": next_url})


def routes() -> list[Route]:
    """The feed's route."""
    return [
        route("GET", "/events/{room}/{token}/", "events_feed", events_feed, authenticated=False)
    ]
