"""Room events as clients see them: one decoded event, encoded at most once per audience and
codec however many connections receive it."""

from __future__ import annotations

from enum import Enum
from typing import Any

from clients.protocol import Codec, RoomEvent, encode
from metering import rooms


class Audience(Enum):
    """Who may see what of a room's events."""

    OWNER = "owner"  # the room's model and broadcast tools: shares and earnings included
    PUBLIC = "public"  # viewers: amounts, names (unless anonymous) and messages only


#: Fields of the scripts' event data, and the names clients see them under.
_PUBLIC_FIELDS = {
    "tip_id": "tip_id",
    "session_id": "session_id",
    "kind": "kind",
    "amount": "amount_minor",
    "currency": "currency",
    "name": "name",
    "anon": "anonymous",
    "message": "message",
    "rate": "rate_per_minute_minor",
    "min_s": "minimum_s",
    "seconds": "seconds",
    "reason": "end_reason",
    "started": "started_at_ms",
    "at": "at_ms",
}
_OWNER_FIELDS = {**_PUBLIC_FIELDS, "share": "share_minor"}


def wire_data(event: rooms.RoomEvent, audience: Audience) -> dict[str, Any]:
    """The ``data`` of a room event for ``audience``, under the protocol's field names.

    Fields the scripts add for new event types pass through with their names, except that
    the model's share and earnings reach the room's owner only.
    """
    names = _OWNER_FIELDS if audience is Audience.OWNER else _PUBLIC_FIELDS
    data: dict[str, Any] = {}
    for key, value in event.data.items():
        if key in ("type", "room"):
            continue
        if key in names:
            data[names[key]] = value
        elif key not in ("share",) and not key.startswith("earn"):
            data[key] = value
    if audience is Audience.OWNER and event.earned_total_minor:
        data["earned_total_minor"] = event.earned_total_minor
    return data


class LiveEvent:
    """A room event on its way to this process's connections."""

    __slots__ = ("_frames", "event", "key", "room")

    def __init__(self, room: str, event: rooms.RoomEvent) -> None:
        self.room = room
        self.event = event
        self.key = rooms.parse_stream_id(event.event_id)
        self._frames: dict[tuple[Audience, Codec], bytes | str] = {}

    def frame(self, audience: Audience, codec: Codec) -> bytes | str:
        """The encoded ``event`` message for ``audience`` in ``codec`` (cached)."""
        cached = self._frames.get((audience, codec))
        if cached is None:
            message = RoomEvent(
                room=self.room,
                id=self.event.event_id,
                event=self.event.event_type,
                data=wire_data(self.event, audience),
            )
            cached = self._frames[(audience, codec)] = encode(message, codec)
        return cached
