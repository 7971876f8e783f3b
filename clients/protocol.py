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

Each message is declared once, below: a dataclass whose fields carry their wire types and
bounds (``Annotated[int, Int(minimum=1)]``), registered with its ``type`` and the roles that may
send it (``@CLIENT_MESSAGES.message("tip", senders=[Role.VIEWER])``). Encoding, decoding and
validation are derived from the declarations by :mod:`clients.declare`; so are the message
tables of ``docs/protocol.md`` (``python -m clients.protocol_docs`` writes them, a test checks
they are current). Frames are :mod:`clients.framing`; codes are :mod:`clients.codes`.

The full reference, with examples in both encodings, is ``docs/protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TypeAlias, cast

from clients.codes import CloseCode, ErrorCode
from clients.declare import (
    ALWAYS,
    AMOUNT_LIMIT_MINOR,
    MESSAGE_CHARS_MAX,
    SPECS,
    AnyMap,
    Choice,
    Currency,
    Id,
    Int,
    IntMap,
    ListOf,
    Object,
    ObjectMap,
    Refused,
    Registry,
    StreamId,
    Text,
    as_map,
    is_id,
    is_stream_id,
    wire_object,
)
from clients.framing import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    Codec,
    DuplicateKey,
    loads_json,
)
from clients.tickets import Role

__all__ = [
    "AMOUNT_LIMIT_MINOR",
    "CLIENT_MESSAGES",
    "JSON_SUBPROTOCOL",
    "MESSAGE_CHARS_MAX",
    "MSGPACK_SUBPROTOCOL",
    "PROTOCOL_VERSION",
    "RATES_KINDS_MAX",
    "SERVER_MESSAGES",
    "AllowanceView",
    "ClientMessage",
    "CloseCode",
    "Codec",
    "Drain",
    "DuplicateKey",
    "Error",
    "ErrorCode",
    "Invalid",
    "MembershipView",
    "Message",
    "Ping",
    "Pong",
    "RateView",
    "RefundAnswer",
    "RefundWaiting",
    "RefundsWaiting",
    "Result",
    "RoomEvent",
    "ServerMessage",
    "SessionStart",
    "SessionStop",
    "SessionUpdate",
    "SessionView",
    "SetRates",
    "Subscribe",
    "Subscribed",
    "SubscriptionUpdate",
    "TabUpdate",
    "TabView",
    "Tip",
    "TipReceipt",
    "Unsubscribe",
    "Unsubscribed",
    "Warning",
    "Welcome",
    "decode_client",
    "decode_server",
    "encode",
    "is_id",
    "is_stream_id",
    "loads_json",
    "may_send",
    "to_map",
]

PROTOCOL_VERSION: Final = 1

#: Kinds of show a rate may be set for (the server checks the names).
RATES_KINDS_MAX: Final = 8

#: What the client sends, by ``type``; what the server decodes.
CLIENT_MESSAGES: Final = Registry("client")
#: What the server sends, by ``type``; what a client decodes.
SERVER_MESSAGES: Final = Registry("server")

_EVERYONE: Final = tuple(Role)
_ID: Final = Id()
_COUNT: Final = Int()
_TEXT: Final = Text()


# ---------------------------------------------------------------------------------------------
# Objects nested in messages


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@wire_object(
    "tab",
    computed=(
        ("remaining_minor", _COUNT, False, "what can still be spent: `cap_minor − accrued_minor`"),
        (
            "seconds_left",
            _COUNT,
            True,
            "seconds until the cap at `burn_minor_per_minute` (`null` while nothing burns)",
        ),
    ),
)
@dataclass(slots=True)
class TabView:
    """A viewer's tab as the viewer sees it. ``version`` grows with every change."""

    tab_id: Annotated[str, _ID]
    currency: Annotated[str, _TEXT]
    state: Annotated[str, _TEXT, "`open`, `settling`, `settled`, `failed`, … (docs/lifecycle.md)"]
    cap_minor: Annotated[int, _COUNT]
    accrued_minor: Annotated[int, _COUNT]
    version: Annotated[int, _COUNT, "grows with every change of the tab"]
    #: Minor units a minute the tab's running sessions cost together (0: none running).
    burn_minor_per_minute: Annotated[
        int, _COUNT, "what the running sessions cost a minute together (0: none)"
    ] = 0

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


@wire_object("session")
@dataclass(frozen=True, slots=True)
class SessionView:
    """A metered show as its viewer sees it. ``seconds`` have been paid for (prepaid through
    the current second); ``amount_minor`` is what they cost."""

    session_id: Annotated[str, _ID]
    room: Annotated[str, _ID]
    kind: Annotated[str, _TEXT]
    state: Annotated[str, _TEXT, "`running` or `ended`"]
    rate_per_minute_minor: Annotated[int, _COUNT]
    minimum_s: Annotated[int, _COUNT]
    started_at_ms: Annotated[int, _COUNT]
    seconds: Annotated[int, _COUNT, "seconds paid for"]
    amount_minor: Annotated[int, _COUNT, "what they cost"]
    end_reason: Annotated[str | None, _TEXT, "why it ended (`null` while it runs)"] = None
    ended_at_ms: Annotated[int | None, _COUNT] = None


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@wire_object("tip")
@dataclass(slots=True)
class TipReceipt:
    """What an applied tip got: its line number on the tab and when it was applied."""

    seq: Annotated[int, _COUNT, "the tip's line number on the tab"]
    applied_at_ms: Annotated[int, _COUNT]


@wire_object("rate")
@dataclass(frozen=True, slots=True)
class RateView:
    """A price: minor units a minute, and a minimum duration in seconds (charged at start)."""

    rate_per_minute_minor: Annotated[
        int, Int(minimum=1, code=ErrorCode.INVALID_AMOUNT), "within the site's bounds"
    ]
    minimum_s: Annotated[int, _COUNT, "charged at the start (0: none)"] = 0


# ---------------------------------------------------------------------------------------------
# Client → server


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@CLIENT_MESSAGES.message("tip", senders=[Role.VIEWER])
@dataclass(slots=True)
class Tip:
    """Pay ``amount_minor`` of ``currency`` from the viewer's tab to ``room``'s model."""

    id: Annotated[str, _ID, "the client-minted tip id"]
    room: Annotated[str, _ID, "the room (model) tipped"]
    amount_minor: Annotated[
        int, Int(minimum=1, code=ErrorCode.INVALID_AMOUNT), "within the server's tip bounds"
    ]
    currency: Annotated[str, Currency(), "the currency of the viewer's tab (the ticket's `cur`)"]
    message: Annotated[str, Text(chars_max=MESSAGE_CHARS_MAX, printable=True)] = ""
    anonymous: Annotated[bool, "hide the viewer's name from the room"] = False


@CLIENT_MESSAGES.message("subscribe", senders=_EVERYONE)
@dataclass(frozen=True, slots=True)
class Subscribe:
    """Receive ``room``'s events after the cursor ``after`` (an event id; None: only new ones)."""

    room: Annotated[str, _ID]
    after: Annotated[str | None, StreamId(), "the last event id seen (absent: only new ones)"] = (
        None
    )
    id: Annotated[str | None, _ID] = None


@CLIENT_MESSAGES.message("unsubscribe", senders=_EVERYONE)
@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop receiving ``room``'s events."""

    room: Annotated[str, _ID]
    id: Annotated[str | None, _ID] = None


@CLIENT_MESSAGES.message("ping", senders=_EVERYONE)
@dataclass(frozen=True, slots=True)
class Ping:
    """Ask for a ``pong`` (latency, keep-alive from browsers that cannot send pings)."""

    id: Annotated[str, _ID]


@CLIENT_MESSAGES.message("session_start", senders=[Role.VIEWER])
@dataclass(frozen=True, slots=True)
class SessionStart:
    """Start a metered show with ``room``'s model (viewers only): ``private``, ``spy`` or
    ``cam2cam``, at the room's current price for that kind."""

    id: Annotated[str, _ID, "the session's id"]
    room: Annotated[str, _ID]
    kind: Annotated[
        str,
        Text(
            nonempty=True,
            code=ErrorCode.INVALID_KIND,
            refusal="kind must be private, spy or cam2cam",
        ),
        "`private`, `spy` or `cam2cam`",
    ]


@CLIENT_MESSAGES.message("session_stop", senders=[Role.VIEWER, Role.MODEL])
@dataclass(frozen=True, slots=True)
class SessionStop:
    """Stop a running session (the viewer who started it, or the room's model)."""

    id: Annotated[str, _ID]
    session_id: Annotated[str, _ID]


@CLIENT_MESSAGES.message("set_rates", senders=[Role.MODEL])
@dataclass(frozen=True, slots=True)
class SetRates:
    """The model sets her room's prices, kind by kind (within the site's bounds)."""

    id: Annotated[str, _ID]
    rates: Annotated[
        dict[str, RateView],
        ObjectMap(SPECS[RateView], items_min=1, items_max=RATES_KINDS_MAX, keys="kinds"),
    ]


@CLIENT_MESSAGES.message("refund_answer", senders=[Role.MODEL])
@dataclass(frozen=True, slots=True)
class RefundAnswer:
    """The room's model accepts or declines a refund waiting for her consent (models only;
    answered by a ``result``: ``applied``, or ``duplicate`` when her room had answered before or
    the refund no longer waits; ``refund_not_found`` when it does not wait for her room)."""

    id: Annotated[str, _ID]
    refund_id: Annotated[str, _ID, "from her latest `refunds_waiting`"]
    accept: Annotated[bool, ALWAYS, "true: accept; false: decline"]


# ---------------------------------------------------------------------------------------------
# Purchases from a model's catalog (issue 17, docs/purchases.md) — one block.


@wire_object("purchase")
@dataclass(frozen=True, slots=True)
class PurchaseInfo:
    """A catalog purchase as its viewer and the model see it."""

    purchase_id: Annotated[str, _ID]
    room: Annotated[str, _ID]
    item_id: Annotated[str, _ID]
    item_name: Annotated[str, _TEXT]
    kind: Annotated[str, _TEXT, "`request` or `unlock`"]
    state: Annotated[str, _TEXT, "`pending`, `granted`, `fulfilled`, `voided` (docs/purchases.md)"]
    amount_minor: Annotated[int, _COUNT, "what it costs (0 once voided)"]
    until_ms: Annotated[int, _COUNT, "a request's deadline; an unlock's end"]


@CLIENT_MESSAGES.message("buy", senders=[Role.VIEWER])
@dataclass(frozen=True, slots=True)
class Buy:
    """Buy ``item_id`` of ``room``'s catalog (``site.<id>``: a site unlock) from the viewer's
    tab, at the catalog's price in the tab's currency."""

    id: Annotated[str, _ID, "the client-minted purchase id"]
    room: Annotated[str, _ID]
    item_id: Annotated[str, _ID]
    message: Annotated[str, Text(chars_max=MESSAGE_CHARS_MAX, printable=True)] = ""
    anonymous: Annotated[bool, "hide the viewer's name from the room"] = False


@CLIENT_MESSAGES.message("fulfil", senders=[Role.MODEL])
@dataclass(frozen=True, slots=True)
class Fulfil:
    """The model marks a pending request of her room done."""

    id: Annotated[str, _ID]
    purchase_id: Annotated[str, _ID]


@CLIENT_MESSAGES.message("decline", senders=[Role.MODEL])
@dataclass(frozen=True, slots=True)
class Decline:
    """The model declines a pending request of her room: it costs the viewer nothing."""

    id: Annotated[str, _ID]
    purchase_id: Annotated[str, _ID]


# -- end of the purchases block ---------------------------------------------------------------


ClientMessage: TypeAlias = (
    Tip
    | Subscribe
    | Unsubscribe
    | Ping
    | SessionStart
    | SessionStop
    | SetRates
    | RefundAnswer
    | Buy  # purchases (issue 17)
    | Fulfil
    | Decline
)


# ---------------------------------------------------------------------------------------------
# Server → client


@SERVER_MESSAGES.message("welcome")
@dataclass(frozen=True, slots=True)
class Welcome:
    """The first message on every connection."""

    protocol: Annotated[int, _COUNT]
    role: Annotated[str, _TEXT, "`viewer`, `model` or `broadcast`"]
    subject: Annotated[str, _TEXT, "the ticket's `sub`"]
    connection_id: Annotated[str, _TEXT]
    server_time_ms: Annotated[int, _COUNT]
    limits: Annotated[dict[str, int], IntMap(), "this server's bounds"] = field(
        default_factory=dict
    )
    tab: Annotated[TabView | None, ALWAYS, "a viewer's open tab in the ticket's currency"] = None
    earnings: Annotated[
        dict[str, int] | None, IntMap(), ALWAYS, "a model's earnings by currency"
    ] = None


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@SERVER_MESSAGES.message("result")
@dataclass(slots=True)
class Result:
    """The reply to a state-changing message that took effect (now, or before: duplicate)."""

    id: Annotated[str, _ID, "the id of the message answered"]
    status: Annotated[str, Choice(("applied", "duplicate"))]
    tab: TabView | None = None
    tip: TipReceipt | None = None
    session: SessionView | None = None
    purchase: PurchaseInfo | None = None  # purchases (issue 17)


@SERVER_MESSAGES.message("error")
@dataclass(frozen=True, slots=True)
class Error:
    """A refusal. ``id`` names the message refused (None when the frame had no usable id)."""

    code: Annotated[str, _TEXT, "an [error code](#error-codes)"]
    message: Annotated[str, Text(chars_max=4_096), "for a person"]
    id: Annotated[str | None, _ID] = None
    tab: Annotated[TabView | None, "with money refusals"] = None
    retry_after_ms: Annotated[int | None, _COUNT, "with `rate_limited`"] = None
    #: With ``insufficient_cap``: how much more the cap must hold to start.
    needed_minor: Annotated[int | None, _COUNT, "with `insufficient_cap`"] = None


@SERVER_MESSAGES.message("tab")
@dataclass(frozen=True, slots=True)
class TabUpdate:
    """The viewer's tab changed (a tip from another device, a raised cap, settlement …)."""

    tab: TabView


@SERVER_MESSAGES.message("session")
@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """A session the viewer started changed: it ended (``end_reason`` says why)."""

    session: SessionView


@SERVER_MESSAGES.message("warning")
@dataclass(frozen=True, slots=True)
class Warning:
    """Low credit: at the tab's current burn rate, ``seconds_left`` remain (the warning point
    ``threshold_s`` was just crossed). Raise the cap, or the show ends at the cap."""

    tab_id: Annotated[str, _ID]
    seconds_left: Annotated[int, _COUNT]
    threshold_s: Annotated[int, _COUNT]


@SERVER_MESSAGES.message("event")
@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One event of a room's stream. ``id`` is the cursor to resume after."""

    room: Annotated[str, _ID]
    id: Annotated[str, StreamId()]
    event: Annotated[str, _TEXT, "`tip`, `session_started`, `session_ended`, …"]
    data: Annotated[dict[str, Any], AnyMap()] = field(default_factory=dict)


@SERVER_MESSAGES.message("subscribed")
@dataclass(frozen=True, slots=True)
class Subscribed:
    """The reply to ``subscribe``. ``gap`` is True when events after the cursor were lost to
    the stream's bound (the client cannot get them any more)."""

    room: Annotated[str, _ID]
    id: Annotated[str | None, _ID] = None
    gap: Annotated[bool, ALWAYS, "events after `after` were lost to the room's bound"] = False


@SERVER_MESSAGES.message("unsubscribed")
@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The reply to ``unsubscribe``."""

    room: Annotated[str, _ID]
    id: Annotated[str | None, _ID] = None


@SERVER_MESSAGES.message("drain")
@dataclass(frozen=True, slots=True)
class Drain:
    """The server is going away: reconnect after about ``reconnect_after_ms`` (elsewhere)."""

    reconnect_after_ms: Annotated[int, _COUNT]


@SERVER_MESSAGES.message("pong")
@dataclass(frozen=True, slots=True)
class Pong:
    """The reply to ``ping``."""

    id: Annotated[str, _ID]
    server_time_ms: Annotated[int, _COUNT]


#: Refunds one ``refunds_waiting`` lists at most (the oldest first).
REFUNDS_WAITING_MAX: Final = 100
#: Lines of one refund a model's list shows at most (hers).
REFUND_LINES_MAX: Final = 1_000
#: Longest customer's note a model's list carries.
REFUND_NOTE_CHARS_MAX: Final = 2_000


@wire_object("refund_waiting")
@dataclass(frozen=True, slots=True)
class RefundWaiting:
    """A refund waiting for the model's consent, as her console lists it."""

    currency: Annotated[str, Currency()]
    amount_minor: Annotated[int, _COUNT, "the whole refund"]
    reason: Annotated[str, _TEXT, "the reason code (`customer_request`, `technical_problem`, …)"]
    origin: Annotated[str, _TEXT, "`merchant` (the cam site) or `customer` (her statement)"]
    requested_at_ms: Annotated[int, _COUNT]
    answer_by_ms: Annotated[int, _COUNT, "after it: declined, or escalated to support"]
    lines: Annotated[dict[str, int], IntMap(), "her lines: line id → amount in minor units"]
    note: Annotated[str, Text(chars_max=REFUND_NOTE_CHARS_MAX), "the customer's own words"] = ""


@SERVER_MESSAGES.message("refunds_waiting")
@dataclass(frozen=True, slots=True)
class RefundsWaiting:
    """To a model: the refunds waiting for her consent, the whole list (it replaces the one
    before), by refund id, oldest first. Sent when her console is welcomed (unless the list is
    empty) and whenever it changes, from any server process."""

    room: Annotated[str, _ID]
    refunds: Annotated[
        dict[str, RefundWaiting],
        ObjectMap(
            SPECS[RefundWaiting], items_min=0, items_max=REFUNDS_WAITING_MAX, keys="refund ids"
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Memberships (issue 16, docs/subscriptions.md) — one block.

#: Features and allowances one ``subscription`` message lists at most.
MEMBERSHIP_FEATURES_MAX: Final = 64
MEMBERSHIP_ALLOWANCES_MAX: Final = 16
#: Subscriptions a viewer is sent when her connection is welcomed, at most (newest first).
MEMBERSHIPS_WELCOME_MAX: Final = 20
_SIGNED: Final = Int(minimum=-(AMOUNT_LIMIT_MINOR - 1))


@wire_object("allowance")
@dataclass(frozen=True, slots=True)
class AllowanceView:
    """What a plan gives its member each period and how much of it is left."""

    kind: Annotated[str, _TEXT, "what it covers: a show kind (`private` …) or `tips`"]
    unit: Annotated[str, _TEXT, "`seconds`, `minor` (money) or `bp` (a discount)"]
    granted: Annotated[int, _COUNT]
    used: Annotated[int, _COUNT]
    left: Annotated[int, _COUNT]


@wire_object("membership")
@dataclass(frozen=True, slots=True)
class MembershipView:
    """A subscription as its member sees it: the fields of ``GET /v1/subscriptions/{id}``
    that say where it stands (docs/subscriptions.md)."""

    subscription_id: Annotated[str, _ID]
    plan_id: Annotated[str, _ID]
    kind: Annotated[str, _TEXT, "`site` or `fan_club`"]
    level: Annotated[str, _TEXT, "the plan's level (`bronze`, `gold` …)"]
    rank: Annotated[int, _COUNT, "a higher rank is an upgrade"]
    state: Annotated[
        str,
        _TEXT,
        "`trialing`, `active`, `past_due`, `restricted`, `paused`, `cancelled`, `expired`",
    ]
    currency: Annotated[str, Currency()]
    period_no: Annotated[int, _COUNT, "the current period (0: the trial)"]
    period_ends_at_ms: Annotated[int, _COUNT]
    updated_at_ms: Annotated[int, _COUNT, "the newest message has the highest"]
    room: Annotated[str | None, _TEXT, "a fan club's room"] = None
    price_minor: Annotated[int | None, _COUNT, "the plan's price a period"] = None
    next_charge_at_ms: Annotated[int | None, _COUNT, "`null`: nothing renews"] = None
    adjustment_minor: Annotated[int, _SIGNED, "prorations due on the next charge"] = 0
    trial_ends_at_ms: Annotated[int | None, _COUNT] = None
    cancel_at_ms: Annotated[int | None, _COUNT, "when a cancellation takes effect"] = None
    past_due_since_ms: Annotated[int | None, _COUNT] = None
    ended_at_ms: Annotated[int | None, _COUNT] = None
    pause_at_ms: Annotated[int | None, _COUNT, "when a pause asked for takes effect"] = None
    paused_at_ms: Annotated[int | None, _COUNT, "since when it is paused"] = None
    features: Annotated[
        list[str], ListOf(Text(chars_max=64), MEMBERSHIP_FEATURES_MAX), "what it includes now"
    ] = field(default_factory=list)
    allowance: Annotated[
        list[AllowanceView] | None,
        ListOf(Object(SPECS[AllowanceView]), MEMBERSHIP_ALLOWANCES_MAX),
        "what is left of the period's allowances (`null`: the plan gives none)",
    ] = None


@SERVER_MESSAGES.message("subscription")
@dataclass(frozen=True, slots=True)
class SubscriptionUpdate:
    """To a viewer: one of her subscriptions, whole. Sent whenever it changes (created, a
    trial ends, renewed, past due, restricted, cancelled, expired, another plan), from any
    server process, and for each of her subscriptions (newest last, at most 20) when her
    connection is welcomed. The one with the highest ``updated_at_ms`` is the newest."""

    subscription: MembershipView


# -- end of the memberships block -------------------------------------------------------------


ServerMessage: TypeAlias = (
    Welcome
    | RefundsWaiting
    | SubscriptionUpdate  # memberships (issue 16)
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
# Encoding and decoding: the same for every message, driven by the declarations above


def may_send(message: ClientMessage, role: str) -> bool:
    """Tell whether a connection of ``role`` may send ``message`` at all (the server still
    checks the rest: a model follows only her own room, stops only her room's sessions)."""
    return role in SPECS[type(message)].senders


def to_map(message: Message) -> dict[str, Any]:
    """The wire map of ``message`` (both codecs encode this same map)."""
    return SPECS[type(message)].dump(message)


def encode(message: Message, codec: Codec) -> bytes | str:
    """Encode ``message`` as one frame of ``codec``."""
    return codec.dumps(SPECS[type(message)].dump(message))


def _frame_map(frame: bytes | str, codec: Codec) -> dict[str, Any] | Invalid:
    try:
        return as_map(codec.loads(frame), "a message")
    except DuplicateKey as exc:
        return Invalid(ErrorCode.DUPLICATE_KEY, str(exc))
    except ValueError as exc:
        return Invalid(ErrorCode.MALFORMED_FRAME, str(exc))
    except Refused as refused:
        return Invalid(ErrorCode.MALFORMED_FRAME, str(refused))


def _decode(frame: bytes | str, codec: Codec, registry: Registry) -> object:
    obj = _frame_map(frame, codec)
    if isinstance(obj, Invalid):
        return obj
    raw_id = obj.get("id")
    # A refusal names the message it refuses when the frame carries a usable id.
    message_id = raw_id if registry is CLIENT_MESSAGES and is_id(raw_id) else None
    try:
        return registry.decode(obj)
    except Refused as refused:
        return Invalid(refused.code, str(refused), message_id)


def decode_client(frame: bytes | str, codec: Codec) -> ClientMessage | Invalid:
    """Decode a frame a client sent. Never raises: a bad frame becomes an :class:`Invalid`."""
    return cast(ClientMessage | Invalid, _decode(frame, codec, CLIENT_MESSAGES))


def decode_server(frame: bytes | str, codec: Codec) -> ServerMessage | Invalid:
    """Decode a frame the server sent. Never raises: a bad frame becomes an :class:`Invalid`."""
    return cast(ServerMessage | Invalid, _decode(frame, codec, SERVER_MESSAGES))
