"""The tipmeter wire protocol, version 1: every message, its validation and its encoding.

Theory of operation. This module is sans-I/O: it imports neither asyncio nor a web framework nor
Redis. The server and the Python SDK both use it; they only move bytes. A frame goes in, a typed
message (or an :class:`Invalid` naming a stable error code) comes out; a message goes in, a
frame comes out. Decoding never raises, whatever the bytes: a peer's mistake is a value.

Two encodings, negotiated per connection by WebSocket subprotocol:

- ``tipmeter.v1.json`` — text frames, JSON (orjson). Integers are strict: ``500`` is an amount,
  ``500.0`` is refused, and JSON has no NaN or infinity.
- ``tipmeter.v1.msgpack`` — binary frames, MessagePack maps with the same keys and types.

Every message is a map with a ``type``. Every state-changing client message carries a
client-minted ``id`` (``[A-Za-z0-9_.-]{1,64}``) that the client keeps until it has the reply:
the server answers each one exactly once, with a ``result`` (``applied``, or ``duplicate`` with
the original outcome) or an ``error`` with a code. Money is an integer number of minor units
below 2**53 with an ISO-4217 currency, everywhere. Unknown fields are ignored (so a newer peer
can add some); unknown types are refused with ``unknown_type``.

The full reference, with examples in both encodings, is ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from typing import Any, Final, TypeAlias, TypeGuard

import msgpack
import orjson

PROTOCOL_VERSION: Final = 1
JSON_SUBPROTOCOL: Final = "tipmeter.v1.json"
MSGPACK_SUBPROTOCOL: Final = "tipmeter.v1.msgpack"

#: Largest frame either side sends, unless the server's ``welcome`` says otherwise.
FRAME_BYTES_MAX_DEFAULT: Final = 4_096
#: Every amount is an integer strictly below this bound.
AMOUNT_LIMIT_MINOR: Final = 2**53
#: Longest tip message and viewer name, in characters.
MESSAGE_CHARS_MAX: Final = 255

_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


class Codec(Enum):
    """A frame encoding, chosen per connection by its WebSocket subprotocol."""

    JSON = JSON_SUBPROTOCOL
    MSGPACK = MSGPACK_SUBPROTOCOL

    @property
    def subprotocol(self) -> str:
        """The subprotocol name that selects this codec."""
        return self.value

    @property
    def binary(self) -> bool:
        """True when frames are binary (msgpack), False for text frames (JSON)."""
        return self is Codec.MSGPACK

    @classmethod
    def negotiate(cls, offered: list[str] | tuple[str, ...]) -> Codec | None:
        """Pick the first codec the client offered (JSON when it offered none); None if it
        offered only subprotocols this server does not speak."""
        if not offered:
            return cls.JSON
        for name in offered:
            for codec in cls:
                if codec.value == name:
                    return codec
        return None

    def dumps(self, obj: Mapping[str, Any]) -> bytes | str:
        """Encode one message map as a frame (bytes for msgpack, str for JSON)."""
        if self is Codec.MSGPACK:
            return msgpack.packb(obj, use_bin_type=True)
        return orjson.dumps(obj).decode()

    def loads(self, frame: bytes | str) -> object:
        """Decode one frame into Python values; raise ValueError if it is not well-formed
        (:class:`DuplicateKey` if a map repeats a key)."""
        if self is Codec.MSGPACK:
            if not isinstance(frame, bytes | bytearray):
                raise ValueError("a msgpack connection carries binary frames")
            try:
                return msgpack.unpackb(
                    frame, raw=False, strict_map_key=True, object_pairs_hook=_unique_pairs
                )
            except DuplicateKey:
                raise
            except Exception as exc:  # msgpack raises several unrelated types
                raise ValueError(f"not msgpack: {exc}") from None
        if not isinstance(frame, str):
            raise ValueError("a JSON connection carries text frames")
        return loads_json(frame)


class DuplicateKey(ValueError):
    """A map (JSON object, msgpack map) repeats a key. Decoders keep the last value, so
    ``{"amount_minor": 1, "amount_minor": 99999}`` would be read differently by a proxy that
    checks the first and a server that applies the last: such input is refused."""

    def __init__(self, key: object) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _unique_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """An ``object_pairs_hook``: the map of ``pairs``, or DuplicateKey."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[Any] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def _key_count(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_key_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_key_count(v) for v in value)
    return 0


def loads_json(text: str | bytes) -> object:
    """Decode JSON strictly (orjson: integers stay integers, no NaN); raise ValueError if it
    is not JSON, :class:`DuplicateKey` if an object repeats a key.

    orjson keeps the last of repeated keys silently, so the input is checked too, cheaply:
    every key is followed by exactly one ``:`` outside strings, so when the text holds no more
    colons than the decoded value has keys, no key can have been dropped. Otherwise (a colon
    in a string, or a repeated key) the standard library's decoder, which reports every pair,
    settles it."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    colons = text.count(":") if isinstance(text, str) else text.count(b":")
    if colons > _key_count(value):
        try:
            json.loads(text, object_pairs_hook=_unique_pairs)
        except RecursionError:
            raise ValueError("not JSON: nested too deeply") from None
    return value


class ErrorCode(StrEnum):
    """Every error code of the protocol. Stable: clients may switch on them."""

    # The frame itself.
    MALFORMED_FRAME = "malformed_frame"
    DUPLICATE_KEY = "duplicate_key"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    INVALID_ID = "invalid_id"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_CURRENCY = "invalid_currency"
    FRAME_TOO_LARGE = "frame_too_large"
    # The connection.
    RATE_LIMITED = "rate_limited"
    NOT_ALLOWED = "not_allowed"
    SUBSCRIPTIONS_FULL = "subscriptions_full"
    # The money core's refusals (see docs/metering.md).
    NO_OPEN_TAB = "no_open_tab"
    INVALID_KIND = "invalid_kind"
    INSUFFICIENT_CAP = "insufficient_cap"
    SESSIONS_FULL = "sessions_full"
    SESSION_NOT_FOUND = "session_not_found"
    MODEL_OFFLINE = "model_offline"
    TAB_NOT_OPEN = "tab_not_open"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    OVER_CAP = "over_cap"
    ID_REUSED = "id_reused"
    LINES_FULL = "lines_full"
    BUSY = "busy"
    #: h-refcol: a ``refund_answer`` for a refund that does not wait for this room.
    REFUND_NOT_FOUND = "refund_not_found"
    # The server.
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"

    @property
    def retryable(self) -> bool:
        """True when sending the same message again (same id) later may succeed."""
        return self in (ErrorCode.RATE_LIMITED, ErrorCode.BUSY, ErrorCode.UNAVAILABLE)


class CloseCode(IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server drains for a deploy: reconnect (elsewhere)
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # a frame exceeded the limit announced in welcome
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013  # Redis was unavailable when the connection opened
    SLOW_CONSUMER = 4008  # the client read too slowly; its send queue overflowed
    TOO_MANY_ERRORS = 4029  # the client kept sending invalid or rate-limited frames


# ---------------------------------------------------------------------------------------------
# Client → server


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class Tip:
    """Pay ``amount_minor`` of ``currency`` from the viewer's tab to ``room``'s model."""

    id: str
    room: str
    amount_minor: int
    currency: str
    message: str = ""
    anonymous: bool = False


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Receive ``room``'s events after the cursor ``after`` (an event id; None: only new ones)."""

    room: str
    after: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop receiving ``room``'s events."""

    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Ask for a ``pong`` (latency, keep-alive from browsers that cannot send pings)."""

    id: str


@dataclass(frozen=True, slots=True)
class SessionStart:
    """Start a metered show with ``room``'s model (viewers only): ``private``, ``spy`` or
    ``cam2cam``, at the room's current price for that kind."""

    id: str
    room: str
    kind: str


@dataclass(frozen=True, slots=True)
class SessionStop:
    """Stop a running session (the viewer who started it, or the room's model)."""

    id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class RateView:
    """A price: minor units a minute, and a minimum duration in seconds (charged at start)."""

    rate_per_minute_minor: int
    minimum_s: int = 0


@dataclass(frozen=True, slots=True)
class SetRates:
    """The model sets her room's prices, kind by kind (within the site's bounds)."""

    id: str
    rates: dict[str, RateView]


# -- h-refcol (issue 14): the model's consent to refunds, live on her console. ---------------


@dataclass(frozen=True, slots=True)
class RefundAnswer:
    """The room's model accepts or declines a refund waiting for her consent (models only)."""

    id: str
    refund_id: str
    accept: bool


# -- end h-refcol

ClientMessage: TypeAlias = (
    Tip | Subscribe | Unsubscribe | Ping | SessionStart | SessionStop | SetRates | RefundAnswer
)


# ---------------------------------------------------------------------------------------------
# Server → client


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class TabView:
    """A viewer's tab as the viewer sees it. ``version`` grows with every change."""

    tab_id: str
    currency: str
    state: str
    cap_minor: int
    accrued_minor: int
    version: int
    #: Minor units a minute the tab's running sessions cost together (0: none running).
    burn_minor_per_minute: int = 0

    @property
    def remaining_minor(self) -> int:
        """How much can still be spent."""
        return max(self.cap_minor - self.accrued_minor, 0)

    @property
    def seconds_left(self) -> int | None:
        """Seconds until the cap at the current burn rate (None while nothing burns)."""
        if self.burn_minor_per_minute <= 0:
            return None
        return self.remaining_minor * 60 // self.burn_minor_per_minute


@dataclass(frozen=True, slots=True)
class SessionView:
    """A metered show as its viewer sees it. ``seconds`` have been paid for (prepaid through
    the current second); ``amount_minor`` is what they cost."""

    session_id: str
    room: str
    kind: str
    state: str
    rate_per_minute_minor: int
    minimum_s: int
    started_at_ms: int
    seconds: int
    amount_minor: int
    end_reason: str | None = None
    ended_at_ms: int | None = None


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class TipReceipt:
    """What an applied tip got: its line number on the tab and when it was applied."""

    seq: int
    applied_at_ms: int


@dataclass(frozen=True, slots=True)
class Welcome:
    """The first message on every connection."""

    protocol: int
    role: str
    subject: str
    connection_id: str
    server_time_ms: int
    limits: dict[str, int]
    tab: TabView | None = None
    earnings: dict[str, int] | None = None


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class Result:
    """The reply to a state-changing message that took effect (now, or before: duplicate)."""

    id: str
    status: str
    tab: TabView | None = None
    tip: TipReceipt | None = None
    session: SessionView | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """A refusal. ``id`` names the message refused (None when the frame had no usable id)."""

    code: str
    message: str
    id: str | None = None
    tab: TabView | None = None
    retry_after_ms: int | None = None
    #: With ``insufficient_cap``: how much more the cap must hold to start.
    needed_minor: int | None = None


@dataclass(frozen=True, slots=True)
class TabUpdate:
    """The viewer's tab changed (a tip from another device, a raised cap, settlement …)."""

    tab: TabView


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """A session the viewer started changed: it ended (``end_reason`` says why)."""

    session: SessionView


@dataclass(frozen=True, slots=True)
class Warning:
    """Low credit: at the tab's current burn rate, ``seconds_left`` remain (the warning point
    ``threshold_s`` was just crossed). Raise the cap, or the show ends at the cap."""

    tab_id: str
    seconds_left: int
    threshold_s: int


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One event of a room's stream. ``id`` is the cursor to resume after."""

    room: str
    id: str
    event: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The reply to ``subscribe``. ``gap`` is True when events after the cursor were lost to
    the stream's bound (the client cannot get them any more)."""

    room: str
    id: str | None = None
    gap: bool = False


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The reply to ``unsubscribe``."""

    room: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Drain:
    """The server is going away: reconnect after about ``reconnect_after_ms`` (elsewhere)."""

    reconnect_after_ms: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The reply to ``ping``."""

    id: str
    server_time_ms: int


# -- h-refcol (issue 14): the model's consent to refunds, live on her console. ---------------

#: Refunds one ``refunds_waiting`` lists at most (the oldest first).
REFUNDS_WAITING_MAX: Final = 100


@dataclass(frozen=True, slots=True)
class RefundsWaiting:
    """The refunds waiting for the room's model to answer, the whole list (it replaces the
    one sent before): each ``{refund_id, currency, amount_minor, reason, note, origin,
    requested_at_ms, answer_by_ms, lines: [{line_id, amount_minor}]}``. Sent when her console
    connects and whenever the list changes."""

    room: str
    refunds: list[dict[str, Any]]


# -- end h-refcol

ServerMessage: TypeAlias = (
    Welcome
    | RefundsWaiting
    | Result
    | Error
    | TabUpdate
    | SessionUpdate
    | Warning
    | RoomEvent
    | Subscribed
    | Unsubscribed
    | Drain
    | Pong
)
Message: TypeAlias = ClientMessage | ServerMessage


@dataclass(frozen=True, slots=True)
class Invalid:
    """A frame that is not a valid message: the code to answer with, and why."""

    code: ErrorCode
    message: str
    id: str | None = field(default=None)


# ---------------------------------------------------------------------------------------------
# Validation


class _Refused(Exception):
    """Raised inside a decoder; becomes an Invalid at the module boundary."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_id(value: object) -> bool:
    """Tell whether ``value`` is a valid message id, room id or tab id."""
    return type(value) is str and _ID.fullmatch(value) is not None


def is_amount(value: object) -> TypeGuard[int]:
    """Tell whether ``value`` is an amount: an ``int`` (never a bool or a float) in [0, 2**53)."""
    return type(value) is int and 0 <= value < AMOUNT_LIMIT_MINOR


#: An event id's parts are below 2**64 (Redis stream ids), and its milliseconds below 2**64 - 1
#: so that "after this id" is an id too (Redis refuses an interval that starts past the last).
STREAM_MS_LIMIT: Final = 2**64 - 1
STREAM_SEQ_LIMIT: Final = 2**64


def is_stream_id(value: object) -> bool:
    """Tell whether ``value`` is an event id (``<ms>-<seq>``) that a stream can hold."""
    if type(value) is not str or _STREAM_ID.fullmatch(value) is None:
        return False
    ms, _, seq = value.partition("-")
    return int(ms) < STREAM_MS_LIMIT and int(seq) < STREAM_SEQ_LIMIT


def _text(obj: Mapping[str, Any], name: str, *, chars_max: int = MESSAGE_CHARS_MAX) -> str:
    value = obj.get(name, "")
    if type(value) is not str or len(value) > chars_max:
        raise _Refused(ErrorCode.INVALID_FIELD, f"{name} must be a string of at most {chars_max}")
    return value


def _ident(obj: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not is_id(value):
        raise _Refused(ErrorCode.INVALID_ID, f"{name} must match {_ID.pattern}")
    return str(value)


def _required_ident(obj: Mapping[str, Any], name: str) -> str:
    value = _ident(obj, name)
    if value is None:  # unreachable with required=True; keeps the type exact
        raise _Refused(ErrorCode.INVALID_ID, f"{name} is required")
    return value


def _int(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if not is_amount(value):
        raise _Refused(ErrorCode.INVALID_FIELD, f"{name} must be an integer in [0, 2**53)")
    return value


def _bool(obj: Mapping[str, Any], name: str, default: bool) -> bool:
    value = obj.get(name, default)
    if type(value) is not bool:
        raise _Refused(ErrorCode.INVALID_FIELD, f"{name} must be true or false")
    return value


def _map(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(type(k) is str for k in value):
        raise _Refused(ErrorCode.INVALID_FIELD, f"{what} must be a map with string keys")
    return value


def _decode_tip(obj: Mapping[str, Any]) -> Tip:
    message_id = _required_ident(obj, "id")
    room = _required_ident(obj, "room")
    amount = obj.get("amount_minor")
    if not is_amount(amount) or amount == 0:
        raise _Refused(
            ErrorCode.INVALID_AMOUNT,
            "amount_minor must be a positive integer number of minor units below 2**53",
        )
    currency = obj.get("currency")
    if type(currency) is not str or _CURRENCY.fullmatch(currency) is None:
        raise _Refused(ErrorCode.INVALID_CURRENCY, "currency must be an ISO-4217 code")
    message = _text(obj, "message")
    if not message.isprintable():
        raise _Refused(ErrorCode.INVALID_FIELD, "message must be printable, on one line")
    return Tip(
        id=message_id,
        room=room,
        amount_minor=amount,
        currency=currency,
        message=message,
        anonymous=_bool(obj, "anonymous", False),
    )


def _decode_subscribe(obj: Mapping[str, Any]) -> Subscribe:
    after = obj.get("after")
    if after is not None and not is_stream_id(after):
        raise _Refused(ErrorCode.INVALID_FIELD, "after must be an event id (<ms>-<seq>)")
    return Subscribe(
        room=_required_ident(obj, "room"), after=after, id=_ident(obj, "id", required=False)
    )


def _decode_unsubscribe(obj: Mapping[str, Any]) -> Unsubscribe:
    return Unsubscribe(room=_required_ident(obj, "room"), id=_ident(obj, "id", required=False))


def _decode_ping(obj: Mapping[str, Any]) -> Ping:
    return Ping(id=_required_ident(obj, "id"))


def _decode_session_start(obj: Mapping[str, Any]) -> SessionStart:
    kind = obj.get("kind")
    if type(kind) is not str or not kind:
        raise _Refused(ErrorCode.INVALID_KIND, "kind must be private, spy or cam2cam")
    return SessionStart(id=_required_ident(obj, "id"), room=_required_ident(obj, "room"), kind=kind)


def _decode_session_stop(obj: Mapping[str, Any]) -> SessionStop:
    return SessionStop(id=_required_ident(obj, "id"), session_id=_required_ident(obj, "session_id"))


#: Kinds of show a rate may be set for (the server checks the names).
RATES_KINDS_MAX: Final = 8


def _decode_set_rates(obj: Mapping[str, Any]) -> SetRates:
    raw = _map(obj.get("rates"), "rates")
    if not raw or len(raw) > RATES_KINDS_MAX:
        raise _Refused(ErrorCode.INVALID_FIELD, f"rates holds 1 to {RATES_KINDS_MAX} kinds")
    rates: dict[str, RateView] = {}
    for kind, value in raw.items():
        rate = _map(value, f"rates.{kind}")
        price = rate.get("rate_per_minute_minor")
        if not is_amount(price) or price == 0:
            raise _Refused(
                ErrorCode.INVALID_AMOUNT, "rate_per_minute_minor must be a positive integer"
            )
        minimum = rate.get("minimum_s", 0)
        if not is_amount(minimum):
            raise _Refused(ErrorCode.INVALID_FIELD, "minimum_s must be a whole number of seconds")
        rates[kind] = RateView(rate_per_minute_minor=price, minimum_s=minimum)
    return SetRates(id=_required_ident(obj, "id"), rates=rates)


def _decode_refund_answer(obj: Mapping[str, Any]) -> RefundAnswer:  # h-refcol
    accept = obj.get("accept")
    if type(accept) is not bool:
        raise _Refused(ErrorCode.INVALID_FIELD, "accept must be true or false")
    return RefundAnswer(
        id=_required_ident(obj, "id"), refund_id=_required_ident(obj, "refund_id"), accept=accept
    )


_CLIENT_DECODERS: Final[dict[str, Callable[[Mapping[str, Any]], ClientMessage]]] = {
    "tip": _decode_tip,
    "subscribe": _decode_subscribe,
    "unsubscribe": _decode_unsubscribe,
    "ping": _decode_ping,
    "session_start": _decode_session_start,
    "session_stop": _decode_session_stop,
    "set_rates": _decode_set_rates,
    "refund_answer": _decode_refund_answer,  # h-refcol
}


def decode_client(frame: bytes | str, codec: Codec) -> ClientMessage | Invalid:
    """Decode a frame a client sent. Never raises: a bad frame becomes an :class:`Invalid`."""
    try:
        obj = _map(codec.loads(frame), "a message")
    except DuplicateKey as exc:
        return Invalid(ErrorCode.DUPLICATE_KEY, str(exc))
    except ValueError as exc:
        return Invalid(ErrorCode.MALFORMED_FRAME, str(exc))
    except _Refused as refused:
        return Invalid(ErrorCode.MALFORMED_FRAME, str(refused))
    raw_id = obj.get("id")
    message_id = raw_id if type(raw_id) is str and is_id(raw_id) else None
    kind = obj.get("type")
    decoder = _CLIENT_DECODERS.get(kind) if type(kind) is str else None
    if decoder is None:
        return Invalid(
            ErrorCode.UNKNOWN_TYPE, f"unknown message type {obj.get('type')!r}", message_id
        )
    try:
        return decoder(obj)
    except _Refused as refused:
        return Invalid(refused.code, str(refused), message_id)


# ---------------------------------------------------------------------------------------------
# Encoding


def _tab_map(tab: TabView) -> dict[str, Any]:
    return {
        "tab_id": tab.tab_id,
        "currency": tab.currency,
        "state": tab.state,
        "cap_minor": tab.cap_minor,
        "accrued_minor": tab.accrued_minor,
        "remaining_minor": tab.remaining_minor,
        "version": tab.version,
        "burn_minor_per_minute": tab.burn_minor_per_minute,
        "seconds_left": tab.seconds_left,
    }


def _session_map(session: SessionView) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "room": session.room,
        "kind": session.kind,
        "state": session.state,
        "rate_per_minute_minor": session.rate_per_minute_minor,
        "minimum_s": session.minimum_s,
        "started_at_ms": session.started_at_ms,
        "seconds": session.seconds,
        "amount_minor": session.amount_minor,
        "end_reason": session.end_reason,
        "ended_at_ms": session.ended_at_ms,
    }


def to_map(message: Message) -> dict[str, Any]:
    """The wire map of ``message`` (both codecs encode this same map)."""
    match message:
        case Tip():
            out: dict[str, Any] = {
                "type": "tip",
                "id": message.id,
                "room": message.room,
                "amount_minor": message.amount_minor,
                "currency": message.currency,
            }
            if message.message:
                out["message"] = message.message
            if message.anonymous:
                out["anonymous"] = True
            return out
        case Subscribe():
            out = {"type": "subscribe", "room": message.room}
            if message.after is not None:
                out["after"] = message.after
            if message.id is not None:
                out["id"] = message.id
            return out
        case Unsubscribe():
            out = {"type": "unsubscribe", "room": message.room}
            if message.id is not None:
                out["id"] = message.id
            return out
        case Ping():
            return {"type": "ping", "id": message.id}
        case SessionStart():
            return {
                "type": "session_start",
                "id": message.id,
                "room": message.room,
                "kind": message.kind,
            }
        case SessionStop():
            return {"type": "session_stop", "id": message.id, "session_id": message.session_id}
        case SetRates():
            return {
                "type": "set_rates",
                "id": message.id,
                "rates": {
                    kind: {
                        "rate_per_minute_minor": r.rate_per_minute_minor,
                        "minimum_s": r.minimum_s,
                    }
                    for kind, r in message.rates.items()
                },
            }
        case Welcome():
            return {
                "type": "welcome",
                "protocol": message.protocol,
                "role": message.role,
                "subject": message.subject,
                "connection_id": message.connection_id,
                "server_time_ms": message.server_time_ms,
                "limits": message.limits,
                "tab": _tab_map(message.tab) if message.tab is not None else None,
                "earnings": message.earnings,
            }
        case Result():
            out = {"type": "result", "id": message.id, "status": message.status}
            if message.tab is not None:
                out["tab"] = _tab_map(message.tab)
            if message.tip is not None:
                out["tip"] = {"seq": message.tip.seq, "applied_at_ms": message.tip.applied_at_ms}
            if message.session is not None:
                out["session"] = _session_map(message.session)
            return out
        case Error():
            out = {"type": "error", "code": message.code, "message": message.message}
            if message.id is not None:
                out["id"] = message.id
            if message.tab is not None:
                out["tab"] = _tab_map(message.tab)
            if message.retry_after_ms is not None:
                out["retry_after_ms"] = message.retry_after_ms
            if message.needed_minor is not None:
                out["needed_minor"] = message.needed_minor
            return out
        case TabUpdate():
            return {"type": "tab", "tab": _tab_map(message.tab)}
        case SessionUpdate():
            return {"type": "session", "session": _session_map(message.session)}
        case Warning():
            return {
                "type": "warning",
                "tab_id": message.tab_id,
                "seconds_left": message.seconds_left,
                "threshold_s": message.threshold_s,
            }
        case RoomEvent():
            return {
                "type": "event",
                "room": message.room,
                "id": message.id,
                "event": message.event,
                "data": message.data,
            }
        case Subscribed():
            out = {"type": "subscribed", "room": message.room, "gap": message.gap}
            if message.id is not None:
                out["id"] = message.id
            return out
        case Unsubscribed():
            out = {"type": "unsubscribed", "room": message.room}
            if message.id is not None:
                out["id"] = message.id
            return out
        case Drain():
            return {"type": "drain", "reconnect_after_ms": message.reconnect_after_ms}
        case Pong():
            return {"type": "pong", "id": message.id, "server_time_ms": message.server_time_ms}
        # -- h-refcol (issue 14): the model's consent to refunds.
        case RefundAnswer():
            return {
                "type": "refund_answer",
                "id": message.id,
                "refund_id": message.refund_id,
                "accept": message.accept,
            }
        case RefundsWaiting():
            return {"type": "refunds_waiting", "room": message.room, "refunds": message.refunds}
        # -- end h-refcol


def encode(message: Message, codec: Codec) -> bytes | str:
    """Encode ``message`` as one frame of ``codec``."""
    return codec.dumps(to_map(message))


# ---------------------------------------------------------------------------------------------
# Decoding what the server sends (for clients)


def _decode_tab(value: object) -> TabView:
    obj = _map(value, "tab")
    state = obj.get("state")
    currency = obj.get("currency")
    if type(state) is not str or type(currency) is not str:
        raise _Refused(ErrorCode.INVALID_FIELD, "tab.state and tab.currency must be strings")
    return TabView(
        tab_id=_required_ident(obj, "tab_id"),
        currency=currency,
        state=state,
        cap_minor=_int(obj, "cap_minor"),
        accrued_minor=_int(obj, "accrued_minor"),
        version=_int(obj, "version"),
        burn_minor_per_minute=_int(obj, "burn_minor_per_minute")
        if "burn_minor_per_minute" in obj
        else 0,
    )


def _optional_int(obj: Mapping[str, Any], name: str) -> int | None:
    return None if obj.get(name) is None else _int(obj, name)


def _decode_session(value: object) -> SessionView:
    obj = _map(value, "session")
    texts = [obj.get(name) for name in ("kind", "state")]
    reason = obj.get("end_reason")
    if not all(type(t) is str for t in texts) or not (reason is None or type(reason) is str):
        raise _Refused(ErrorCode.INVALID_FIELD, "session kind, state and end_reason are strings")
    return SessionView(
        session_id=_required_ident(obj, "session_id"),
        room=_required_ident(obj, "room"),
        kind=str(texts[0]),
        state=str(texts[1]),
        rate_per_minute_minor=_int(obj, "rate_per_minute_minor"),
        minimum_s=_int(obj, "minimum_s"),
        started_at_ms=_int(obj, "started_at_ms"),
        seconds=_int(obj, "seconds"),
        amount_minor=_int(obj, "amount_minor"),
        end_reason=reason,
        ended_at_ms=_optional_int(obj, "ended_at_ms"),
    )


def _optional_tab(obj: Mapping[str, Any]) -> TabView | None:
    value = obj.get("tab")
    return None if value is None else _decode_tab(value)


def _int_map(value: object, what: str) -> dict[str, int]:
    obj = _map(value, what)
    if not all(is_amount(v) for v in obj.values()):
        raise _Refused(ErrorCode.INVALID_FIELD, f"{what} values must be integers")
    return {k: int(v) for k, v in obj.items()}


def _decode_welcome(obj: Mapping[str, Any]) -> Welcome:
    earnings = obj.get("earnings")
    role, subject = obj.get("role"), obj.get("subject")
    if type(role) is not str or type(subject) is not str:
        raise _Refused(ErrorCode.INVALID_FIELD, "role and subject must be strings")
    return Welcome(
        protocol=_int(obj, "protocol"),
        role=role,
        subject=subject,
        connection_id=_text(obj, "connection_id"),
        server_time_ms=_int(obj, "server_time_ms"),
        limits=_int_map(obj.get("limits", {}), "limits"),
        tab=_optional_tab(obj),
        earnings=None if earnings is None else _int_map(earnings, "earnings"),
    )


def _decode_result(obj: Mapping[str, Any]) -> Result:
    status = obj.get("status")
    if status not in ("applied", "duplicate"):
        raise _Refused(ErrorCode.INVALID_FIELD, "status must be applied or duplicate")
    tip = obj.get("tip")
    receipt = None
    if tip is not None:
        tip_map = _map(tip, "tip")
        receipt = TipReceipt(seq=_int(tip_map, "seq"), applied_at_ms=_int(tip_map, "applied_at_ms"))
    session = obj.get("session")
    return Result(
        id=_required_ident(obj, "id"),
        status=str(status),
        tab=_optional_tab(obj),
        tip=receipt,
        session=None if session is None else _decode_session(session),
    )


def _decode_error(obj: Mapping[str, Any]) -> Error:
    code = obj.get("code")
    if type(code) is not str:
        raise _Refused(ErrorCode.INVALID_FIELD, "code must be a string")
    retry = obj.get("retry_after_ms")
    return Error(
        code=code,
        message=_text(obj, "message", chars_max=4_096),
        id=_ident(obj, "id", required=False),
        tab=_optional_tab(obj),
        retry_after_ms=None if retry is None else _int(obj, "retry_after_ms"),
        needed_minor=_optional_int(obj, "needed_minor"),
    )


def _decode_event(obj: Mapping[str, Any]) -> RoomEvent:
    event_id, event = obj.get("id"), obj.get("event")
    if not is_stream_id(event_id) or type(event) is not str:
        raise _Refused(ErrorCode.INVALID_FIELD, "an event needs an id (<ms>-<seq>) and a type")
    return RoomEvent(
        room=_required_ident(obj, "room"),
        id=str(event_id),
        event=event,
        data=_map(obj.get("data", {}), "data"),
    )


def _decode_tab_update(obj: Mapping[str, Any]) -> TabUpdate:
    return TabUpdate(tab=_decode_tab(obj.get("tab")))


def _decode_session_update(obj: Mapping[str, Any]) -> SessionUpdate:
    return SessionUpdate(session=_decode_session(obj.get("session")))


def _decode_warning(obj: Mapping[str, Any]) -> Warning:
    return Warning(
        tab_id=_required_ident(obj, "tab_id"),
        seconds_left=_int(obj, "seconds_left"),
        threshold_s=_int(obj, "threshold_s"),
    )


def _decode_subscribed(obj: Mapping[str, Any]) -> Subscribed:
    return Subscribed(
        room=_required_ident(obj, "room"),
        id=_ident(obj, "id", required=False),
        gap=_bool(obj, "gap", False),
    )


def _decode_unsubscribed(obj: Mapping[str, Any]) -> Unsubscribed:
    return Unsubscribed(room=_required_ident(obj, "room"), id=_ident(obj, "id", required=False))


def _decode_drain(obj: Mapping[str, Any]) -> Drain:
    return Drain(reconnect_after_ms=_int(obj, "reconnect_after_ms"))


def _decode_pong(obj: Mapping[str, Any]) -> Pong:
    return Pong(id=_required_ident(obj, "id"), server_time_ms=_int(obj, "server_time_ms"))


def _decode_refunds_waiting(obj: Mapping[str, Any]) -> RefundsWaiting:  # h-refcol
    raw = obj.get("refunds")
    if type(raw) is not list or len(raw) > REFUNDS_WAITING_MAX:
        raise _Refused(
            ErrorCode.INVALID_FIELD, f"refunds must be a list of at most {REFUNDS_WAITING_MAX}"
        )
    return RefundsWaiting(
        room=_required_ident(obj, "room"), refunds=[_map(item, "a refund") for item in raw]
    )


_SERVER_DECODERS: Final[dict[str, Callable[[Mapping[str, Any]], ServerMessage]]] = {
    "welcome": _decode_welcome,
    "result": _decode_result,
    "error": _decode_error,
    "tab": _decode_tab_update,
    "session": _decode_session_update,
    "warning": _decode_warning,
    "event": _decode_event,
    "subscribed": _decode_subscribed,
    "unsubscribed": _decode_unsubscribed,
    "drain": _decode_drain,
    "pong": _decode_pong,
    "refunds_waiting": _decode_refunds_waiting,  # h-refcol
}


def decode_server(frame: bytes | str, codec: Codec) -> ServerMessage | Invalid:
    """Decode a frame the server sent. Never raises: a bad frame becomes an :class:`Invalid`."""
    try:
        obj = _map(codec.loads(frame), "a message")
    except DuplicateKey as exc:
        return Invalid(ErrorCode.DUPLICATE_KEY, str(exc))
    except ValueError as exc:
        return Invalid(ErrorCode.MALFORMED_FRAME, str(exc))
    except _Refused as refused:
        return Invalid(ErrorCode.MALFORMED_FRAME, str(refused))
    kind = obj.get("type")
    decoder = _SERVER_DECODERS.get(kind) if type(kind) is str else None
    if decoder is None:
        return Invalid(ErrorCode.UNKNOWN_TYPE, f"unknown message type {obj.get('type')!r}")
    try:
        return decoder(obj)
    except _Refused as refused:
        return Invalid(refused.code, str(refused))
