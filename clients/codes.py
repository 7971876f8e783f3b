"""The protocol's error codes and the server's close codes, each with what it means.

The meanings here are the ones ``docs/protocol.md`` shows: its tables of codes are generated
from this module (``python -m clients.protocol_docs``), so a code is added in one place.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final


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
    REFUND_NOT_FOUND = "refund_not_found"
    # Purchases from a model's catalog (issue 17, docs/purchases.md).
    ITEM_NOT_FOUND = "item_not_found"
    ITEM_INACTIVE = "item_inactive"
    PRICE_MISSING = "price_missing"
    LIMIT_REACHED = "limit_reached"
    PURCHASE_NOT_FOUND = "purchase_not_found"
    PURCHASE_NOT_PENDING = "purchase_not_pending"
    # The server.
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"

    @property
    def retryable(self) -> bool:
        """True when sending the same message again (same id) later may succeed."""
        return self in (ErrorCode.RATE_LIMITED, ErrorCode.BUSY, ErrorCode.UNAVAILABLE)

    @property
    def meaning(self) -> str:
        """What the code tells the client, in words for a person (the docs' table)."""
        return ERROR_MEANINGS[self]


#: What each error code means (a test checks every code has one).
ERROR_MEANINGS: Final[dict[ErrorCode, str]] = {
    ErrorCode.MALFORMED_FRAME: "not JSON / MessagePack, not a map, or the wrong frame kind for "
    "the subprotocol",
    ErrorCode.DUPLICATE_KEY: "a map repeats a key (JSON or MessagePack): refused rather than "
    "keep either value",
    ErrorCode.UNKNOWN_TYPE: "`type` is missing or unknown",
    ErrorCode.INVALID_FIELD: "a field has the wrong type, is missing, or is too long",
    ErrorCode.INVALID_ID: "an id does not match `[A-Za-z0-9_.-]{1,64}`",
    ErrorCode.INVALID_AMOUNT: "not an integer number of minor units in 1 … 2^53-1",
    ErrorCode.INVALID_CURRENCY: "not an ISO-4217 code this server accepts",
    ErrorCode.FRAME_TOO_LARGE: "(the connection closes with 1009 instead)",
    ErrorCode.RATE_LIMITED: "more tips or frames than the limits allow",
    ErrorCode.NOT_ALLOWED: "the role may not do this (only viewers tip; models follow their "
    "own room)",
    ErrorCode.SUBSCRIPTIONS_FULL: "already following `limits.subscriptions_max` rooms",
    ErrorCode.NO_OPEN_TAB: "the viewer has no open tab in this currency",
    ErrorCode.INVALID_KIND: "a session kind other than `private`, `spy`, `cam2cam`",
    ErrorCode.INSUFFICIENT_CAP: "the session's first charge does not fit (`needed_minor` says "
    "how much more)",
    ErrorCode.SESSIONS_FULL: "the tab funds as many sessions as it may "
    "(`TIPMETER_SESSIONS_PER_TAB_MAX`)",
    ErrorCode.SESSION_NOT_FOUND: "no such session for this connection",
    ErrorCode.MODEL_OFFLINE: "the room's model is not connected",
    ErrorCode.TAB_NOT_OPEN: "the tab is being settled: nothing more can be spent on it",
    ErrorCode.CURRENCY_MISMATCH: "the tip's currency is not the tab's",
    ErrorCode.AMOUNT_OUT_OF_RANGE: "outside the server's tip bounds",
    ErrorCode.OVER_CAP: "the tip does not fit under the cap (`tab` shows what remains); raise "
    "the cap",
    ErrorCode.ID_REUSED: "this id was used for a different tip",
    ErrorCode.LINES_FULL: "the tab holds as many lines as it may; it must be settled",
    ErrorCode.BUSY: "the server is catching up",
    ErrorCode.REFUND_NOT_FOUND: "`refund_answer`: the refund does not wait for this room's consent",
    ErrorCode.ITEM_NOT_FOUND: "the room's catalog (or the site) has no such item",
    ErrorCode.ITEM_INACTIVE: "the item is not for sale now",
    ErrorCode.PRICE_MISSING: "the item has no price in the tab's currency",
    ErrorCode.LIMIT_REACHED: "the item's limit per viewer or per show is reached",
    ErrorCode.PURCHASE_NOT_FOUND: "no such purchase (in this room)",
    ErrorCode.PURCHASE_NOT_PENDING: "the request was fulfilled or voided already",
    ErrorCode.UNAVAILABLE: "the server cannot reach Redis",
    ErrorCode.INTERNAL_ERROR: "a bug; it is logged",
}


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

    @property
    def meaning(self) -> str:
        """What the close tells the client (the docs' table)."""
        return CLOSE_MEANINGS[self]


#: What each close code means (a test checks every code has one).
CLOSE_MEANINGS: Final[dict[CloseCode, str]] = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.GOING_AWAY: "the server drains for a deploy (after a `drain` message): reconnect",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "a frame exceeded `limits.frame_bytes_max`",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SERVICE_RESTART: "the server restarted without draining: reconnect",
    CloseCode.TRY_AGAIN_LATER: "the server could not reach Redis when the connection opened: "
    "reconnect later",
    CloseCode.SLOW_CONSUMER: "the client read too slowly: its queue of "
    "`limits.send_queue_frames_max` frames overflowed (a backlog never does: it is paced by the "
    "client's reading)",
    CloseCode.TOO_MANY_ERRORS: "the client kept sending invalid or rate-limited frames",
}
