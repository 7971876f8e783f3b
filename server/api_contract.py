"""The HTTP API's contract, declared once: its input fields with their bounds, and its error
codes with their statuses.

Theory of operation. Each input the API reads (a body field, a header, a query parameter) is a
:class:`Param`: the operations in :mod:`server.api`, :mod:`server.feed` and
:mod:`server.overlay` check their arguments with it (``CURRENCY.check(value)`` raises the
:class:`ApiError` the API answers), and :mod:`server.openapi` draws the very same object as the
JSON Schema of ``/openapi.json`` (``CURRENCY.schema(bounds)``). Bounds that come from the
settings (the cap range, the longest ticket) are read from :class:`Bounds`, built from the
running server, so the document states what this server enforces. tests/server/test_openapi.py
walks the params and the document, and sends requests at each bound to a real server.

Every error code the server answers is in :data:`ERRORS` with its one status and its meaning;
a test reads every ``ApiError(status, "code", …)`` of the server package and checks it is
there, and the document enumerates the codes each status may carry.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.responses import JSONResponse

from clients.declare import STREAM_ID_PATTERN, is_stream_id
from clients.ids import ID_PATTERN
from clients.tickets import Role
from metering.allowances import AllowanceKind
from metering.lifecycle import TabState
from metering.limits import Limits
from metering.money import AMOUNT_LIMIT_MINOR, CURRENCY_EXPONENTS
from settlement.subscriptions.plans import AllowanceUnit

#: Longest Idempotency-Key header accepted (same alphabet as ids).
IDEMPOTENCY_KEY_CHARS_MAX: Final = 64
#: Life of a minted ticket when the request names none, in seconds.
TICKET_TTL_S_DEFAULT: Final = 60
#: Longest display name a ticket carries, in characters.
TICKET_NAME_CHARS_MAX: Final = 64
#: Longest capture id accepted (processors' ids are far shorter).
CAPTURE_ID_CHARS_MAX: Final = 255
#: Longest card token (the gateway's payment method) a tab is opened with.
PAYMENT_METHOD_CHARS_MAX: Final = 128
#: A model's share is in basis points of each charge: 0 … 10,000 (100 %).
PAYOUT_BP_MAX: Final = 10_000
#: A feed ``timeout``: ASCII digits, few enough to parse at once (the wait is capped anyway).
FEED_TIMEOUT_DIGITS_MAX: Final = 9
#: The feed's wait when the request gives no ``timeout``.
FEED_TIMEOUT_S_DEFAULT: Final = 10
#: Longest feed token accepted (the server mints 32 characters).
FEED_TOKEN_CHARS_MAX: Final = 128
#: Largest amount anywhere: every amount is below 2**53.
AMOUNT_MAX_MINOR: Final = AMOUNT_LIMIT_MINOR - 1

#: One entry of the ``allowance`` array of a subscription's answer (``GET
#: /v1/subscriptions/{id}`` and every answer that shows a subscription): what its plan gives in
#: the current period and what is left of it (docs/subscriptions.md, "Allowances"). Free
#: seconds (``unit`` ``seconds``) are consumed by shows of their kind; a discount (``unit``
#: ``bp``, on a kind's per-minute rate or on tips) is not: its ``used`` is 0, ``left`` all of it.
#: settlement.subscriptions.allowances.AllowanceLeft.to_json builds it; the viewer's membership
#: panel reads it.
ALLOWANCE_ENTRY: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["kind", "unit", "granted", "used", "left"],
    "additionalProperties": False,
    "properties": {
        "kind": {"type": "string", "enum": [kind.value for kind in AllowanceKind]},
        "unit": {"type": "string", "enum": [unit.value for unit in AllowanceUnit]},
        "granted": {"type": "integer", "minimum": 0},
        "used": {"type": "integer", "minimum": 0},
        "left": {"type": "integer", "minimum": 0},
    },
}


class ApiError(Exception):
    """An error answer: status, stable code, message and extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra

    def response(self) -> JSONResponse:
        """The JSON answer."""
        body = {"error": {"code": self.code, "message": str(self), **self.extra}}
        return JSONResponse(body, status_code=self.status)


@dataclass(frozen=True, slots=True)
class Bounds:
    """The bounds of this server's settings that its inputs are checked against."""

    cap_min_minor: int
    cap_max_minor: int
    ticket_ttl_s_max: int
    feed_timeout_s_max: int

    @classmethod
    def of(cls, limits: Limits, *, ticket_ttl_s_max: int, feed_timeout_s_max: int) -> Bounds:
        """The bounds of a server with these limits and settings."""
        return cls(
            cap_min_minor=limits.cap_min_minor,
            cap_max_minor=limits.cap_max_minor,
            ticket_ttl_s_max=ticket_ttl_s_max,
            feed_timeout_s_max=feed_timeout_s_max,
        )


Bound = int | Callable[[Bounds], int]


def _resolve(bound: Bound, bounds: Bounds) -> int:
    return bound if isinstance(bound, int) else bound(bounds)


# ---------------------------------------------------------------------------------------------
# Params


@dataclass(frozen=True, slots=True, kw_only=True)
class Param(ABC):
    """One input: its name, how it is refused (code, message), its description and example.
    ``refusal`` may name bounds as ``{low}`` and ``{high}``."""

    name: str
    code: str = "invalid_field"
    refusal: str = ""
    description: str = ""
    example: Any = None
    status: int = 400

    @abstractmethod
    def accepts(self, value: object, bounds: Bounds) -> bool:
        """Tell whether ``value`` is a valid input for this server."""

    @abstractmethod
    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        """The JSON Schema of the values :meth:`accepts` accepts."""

    def _refusal(self, bounds: Bounds) -> str:
        return self.refusal

    def check(self, value: object, bounds: Bounds | None = None) -> Any:
        """``value``, or the ApiError the API answers for it. ``bounds`` is needed only by
        params whose bounds come from the settings."""
        checked_against = bounds or _NO_BOUNDS
        if not self.accepts(value, checked_against):
            raise ApiError(self.status, self.code, self._refusal(checked_against))
        return value

    def schema(self, bounds: Bounds) -> dict[str, Any]:
        """The JSON Schema of the param, with its description and example."""
        out = self._schema(bounds)
        if self.description:
            out["description"] = self.description
        if self.example is not None:
            out["examples"] = [self.example]
        return out


# The params that need no settings are checked against this; any bound read from it is a bug
# (a param with bounds from the settings must be given the server's Bounds).
_NO_BOUNDS: Final = Bounds(0, -1, -1, -1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pattern(Param):
    """A string matching ``pattern`` (and, with ``allow_empty``, the empty string)."""

    pattern: re.Pattern[str]
    allow_empty: bool = False

    def accepts(self, value: object, bounds: Bounds) -> bool:
        if not isinstance(value, str):
            return False
        return (self.allow_empty and value == "") or self.pattern.fullmatch(value) is not None

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        body = self.pattern.pattern
        return {"type": "string", "pattern": f"^({body})?$" if self.allow_empty else f"^{body}$"}


@dataclass(frozen=True, slots=True, kw_only=True)
class OneOf(Param):
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return isinstance(value, str) and value in self.values

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Integer(Param):
    """An integer (never a bool or a float) in ``minimum … maximum``. With ``range_code``, a
    value of the right type out of the range is refused with that code instead
    (:meth:`check_type` and :meth:`check_range` check the two apart)."""

    minimum: Bound = 0
    maximum: Bound = AMOUNT_MAX_MINOR
    range_code: str = ""
    range_refusal: str = ""

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return type(value) is int and _resolve(self.minimum, bounds) <= value <= _resolve(
            self.maximum, bounds
        )

    def _refusal(self, bounds: Bounds) -> str:
        return self.refusal.format(
            low=_resolve(self.minimum, bounds), high=_resolve(self.maximum, bounds)
        )

    def check(self, value: object, bounds: Bounds | None = None) -> Any:
        if self.range_code:
            return self.check_range(self.check_type(value), bounds or _NO_BOUNDS)
        return Param.check(self, value, bounds)

    def check_type(self, value: object) -> int:
        """``value`` if it is an amount (0 … 2^53-1), else the ApiError of ``code``."""
        if type(value) is not int or not 0 <= value <= AMOUNT_MAX_MINOR:
            raise ApiError(self.status, self.code, self.refusal)
        return value

    def check_range(self, value: int, bounds: Bounds) -> int:
        """``value`` if it is within this server's bounds, else the ApiError of
        ``range_code``."""
        low, high = _resolve(self.minimum, bounds), _resolve(self.maximum, bounds)
        if not low <= value <= high:
            raise ApiError(
                self.status, self.range_code, self.range_refusal.format(low=low, high=high)
            )
        return value

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        return {
            "type": "integer",
            "minimum": _resolve(self.minimum, bounds),
            "maximum": _resolve(self.maximum, bounds),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Text(Param):
    """A string of ``chars_min`` … ``chars_max`` characters, printable on one line if
    ``printable``."""

    chars_min: int = 0
    chars_max: int
    printable: bool = False

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return (
            isinstance(value, str)
            and self.chars_min <= len(value) <= self.chars_max
            and (not self.printable or value.isprintable())
        )

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.chars_max}
        if self.chars_min:
            out["minLength"] = self.chars_min
        if self.printable:
            # The pattern states the common cases (control characters, line and paragraph
            # separators); the description the whole rule, Python's str.isprintable.
            out["pattern"] = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
            out["x-printable"] = True
        return out

    def schema(self, bounds: Bounds) -> dict[str, Any]:
        out = Param.schema(self, bounds)
        if self.printable:
            rule = (
                "Printable, on one line: no control, format, private-use or unassigned "
                "character, and no separator but the space (Python's str.isprintable)."
            )
            out["description"] = f"{out.get('description', '')} {rule}".strip()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryInteger(Param):
    """A query parameter holding a whole number: ASCII digits only (``str.isdigit`` takes
    "²"), at most ``digits_max`` of them."""

    digits_max: int
    #: What the server does past this bound (the value is capped, not refused).
    capped_at: Bound = 0

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return (
            isinstance(value, str)
            and 0 < len(value) <= self.digits_max
            and value.isascii()
            and value.isdigit()
        )

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "integer",
            "minimum": 0,
            "maximum": 10**self.digits_max - 1,
        }
        if self.capped_at:
            out["x-capped-at"] = _resolve(self.capped_at, bounds)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Cursor(Param):
    """An event id ``<ms>-<seq>`` a Redis stream can hold (the feed's ``i``)."""

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return is_stream_id(value)

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{STREAM_ID_PATTERN.pattern}$"}


def _json_type(value: object) -> str:
    """The JSON Schema type of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind, name in ((int, "integer"), (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return "number"


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag(Param):
    """``true`` or ``false`` (never 0, 1 or a string)."""

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return isinstance(value, bool)

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Null(Param):
    """JSON ``null`` (an option of :class:`Either`: "absent")."""

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return value is None

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        return {"type": "null"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Either(Param):
    """One of ``options``, each of another JSON type. A value is checked by the option of its
    type (so it is refused with that option's code and message); a value of no option's type
    with this param's."""

    options: tuple[Param, ...]

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return any(option.accepts(value, bounds) for option in self.options)

    def check(self, value: object, bounds: Bounds | None = None) -> Any:
        kind = _json_type(value)
        for option in self.options:
            if option.schema(bounds or _NO_BOUNDS).get("type") == kind:
                return option.check(value, bounds)
        raise ApiError(self.status, self.code, self._refusal(bounds or _NO_BOUNDS))

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        return {"anyOf": [option.schema(bounds) for option in self.options]}


def nullable(param: Param) -> Either:
    """``param`` or ``null`` (which the operation reads as "absent"), refused as ``param``."""
    return Either(
        name=param.name,
        options=(param, Null(name=param.name)),
        code=param.code,
        refusal=param.refusal,
        status=param.status,
        example=param.example,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Items(Param):
    """A list of at most ``items_max`` values, each an ``item``. The list is refused with this
    param's code, an item with the item's."""

    item: Param
    items_max: int

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return (
            isinstance(value, list)
            and len(value) <= self.items_max
            and all(self.item.accepts(each, bounds) for each in value)
        )

    def check(self, value: object, bounds: Bounds | None = None) -> Any:
        if not (isinstance(value, list) and len(value) <= self.items_max):
            raise ApiError(self.status, self.code, self._refusal(bounds or _NO_BOUNDS))
        for each in value:
            self.item.check(each, bounds)
        return value

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        return {"type": "array", "maxItems": self.items_max, "items": self.item.schema(bounds)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Record(Param):
    """A JSON object of ``fields`` (``required`` among them; other keys are ignored). The object
    is refused with this param's code, a field with the field's (a required field missing is
    checked as ``null``)."""

    fields: tuple[Param, ...]
    required: tuple[str, ...] = ()

    def accepts(self, value: object, bounds: Bounds) -> bool:
        return (
            isinstance(value, dict)
            and all(name in value for name in self.required)
            and all(p.accepts(value[p.name], bounds) for p in self.fields if p.name in value)
        )

    def check(self, value: object, bounds: Bounds | None = None) -> Any:
        if not isinstance(value, dict):
            raise ApiError(self.status, self.code, self._refusal(bounds or _NO_BOUNDS))
        for param in self.fields:
            if param.name in value or param.name in self.required:
                param.check(value.get(param.name), bounds)
        return value

    def _schema(self, bounds: Bounds) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: p.schema(bounds) for p in self.fields},
        }
        if self.required:
            out["required"] = list(self.required)
        return out


def id_param(name: str, description: str = "", example: str = "") -> Pattern:
    """An id (the one id pattern of :mod:`clients.ids`), refused with ``invalid_id``."""
    return Pattern(
        name=name,
        pattern=ID_PATTERN,
        code="invalid_id",
        refusal=f"{name} must match {ID_PATTERN.pattern}",
        description=description,
        example=example or None,
    )


CUSTOMER: Final = id_param("customer", "The cam site's id of the customer.", "c42")
TAB_ID: Final = id_param("tab_id", "", "tab_Q2xv9")
ROOM: Final = id_param("room", "The model's room.", "alice")
SUBJECT: Final = id_param(
    "subject", "The viewer's customer id, or the room for `model` and `broadcast`.", "c42"
)
IDEMPOTENCY_KEY: Final = Pattern(
    name="Idempotency-Key",
    pattern=ID_PATTERN,
    code="idempotency_key_required",
    refusal=f"send an Idempotency-Key header ({ID_PATTERN.pattern})",
    description="Retries with the same key open the same tab, never a second hold.",
    example="open-7f3a",
)
CURRENCY: Final = OneOf(
    name="currency",
    values=tuple(CURRENCY_EXPONENTS),
    code="invalid_currency",
    refusal="currency must be an accepted ISO-4217 code",
    description="An ISO-4217 code this server accepts.",
    example="USD",
)
CAP: Final = Integer(
    name="cap_minor",
    minimum=lambda b: b.cap_min_minor,
    maximum=lambda b: b.cap_max_minor,
    code="invalid_amount",
    refusal="cap_minor must be an integer number of minor units",
    range_code="cap_out_of_range",
    range_refusal="cap_minor must be within {low}..{high}",
    description="The spending cap, in minor units (the hold placed on the card).",
    example=5_000,
)
PAYMENT_METHOD: Final = Text(
    name="payment_method",
    chars_min=1,
    chars_max=PAYMENT_METHOD_CHARS_MAX,
    refusal="payment_method must be the gateway's card token",
    description="The gateway's card token.",
    example="tok_visa",
)
COUNTRY: Final = Pattern(
    name="country",
    pattern=re.compile(r"[A-Za-z]{2}"),
    allow_empty=True,
    refusal="country must be an ISO 3166 alpha-2 code",
    description="The customer's country (ISO 3166 alpha-2), for routing.",
    example="US",
)
COUNTRY_EVIDENCE: Final = Text(
    name="country_evidence",
    chars_max=200,
    printable=True,
    refusal="country_evidence must be at most 200 printable characters",
    description="What the country was decided from (billing address, card country, IP); "
    "recorded on the tab's invoice.",
    example="card country",
)
EMAIL: Final = Pattern(
    name="email",
    pattern=re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}"),
    allow_empty=True,
    refusal="email must be an e-mail address",
    description="Where the invoice of the tab's capture (and any credit note) is e-mailed.",
    example="fan@example.com",
)
LANGUAGE: Final = Pattern(
    name="language",
    pattern=re.compile(r"[a-z]{2}"),
    allow_empty=True,
    refusal="language must be an ISO 639-1 code (en, de …)",
    description="The language of the e-mailed receipts (others than en, de read English).",
    example="en",
)
PROCESSOR: Final = Pattern(
    name="processor",
    pattern=ID_PATTERN,
    allow_empty=True,
    refusal="processor must name a configured processor",
    description="The cam site's choice of processor (docs/processors.md).",
    example="sandbox",
)
ROLE: Final = OneOf(
    name="role",
    values=tuple(Role),
    refusal="role must be viewer, model or broadcast",
    example="viewer",
)
TICKET_NAME: Final = Text(
    name="name",
    chars_max=TICKET_NAME_CHARS_MAX,
    printable=True,
    refusal=f"name must be printable, at most {TICKET_NAME_CHARS_MAX} characters",
    description="Display name shown with the viewer's tips (may be empty).",
    example="Bob",
)
TICKET_TTL_S: Final = Integer(
    name="ttl_s",
    minimum=1,
    maximum=lambda b: b.ticket_ttl_s_max,
    refusal="ttl_s must be within {low}..{high}",
    description=f"Life of the ticket in seconds (default {TICKET_TTL_S_DEFAULT}).",
    example=TICKET_TTL_S_DEFAULT,
)
PAYOUT_BP: Final = Integer(
    name="payout_bp",
    minimum=0,
    maximum=PAYOUT_BP_MAX,
    refusal=f"payout_bp must be an integer in 0..{PAYOUT_BP_MAX}",
    description="The model's share of later charges, in basis points (10000 = 100 %).",
    example=6_000,
)
CAPTURE_ID: Final = Text(
    name="capture_id",
    chars_min=1,
    chars_max=CAPTURE_ID_CHARS_MAX,
    code="capture_not_found",
    status=404,
    description="The processor's capture id, as on the card statement.",
    example="cap_3Qx9",
)
FEED_TIMEOUT: Final = QueryInteger(
    name="timeout",
    digits_max=FEED_TIMEOUT_DIGITS_MAX,
    capped_at=lambda b: b.feed_timeout_s_max,
    refusal="timeout is a whole number of seconds",
    description="Seconds to wait for an event when there is none (default "
    f"{FEED_TIMEOUT_S_DEFAULT}); longer waits are cut to the server's "
    "`TIPMETER_FEED_TIMEOUT_S_MAX` (`x-capped-at`).",
    example=FEED_TIMEOUT_S_DEFAULT,
)
FEED_TOKEN: Final = Text(
    name="token",
    chars_min=1,
    chars_max=FEED_TOKEN_CHARS_MAX,
    code="invalid_token",
    status=401,
    refusal="unknown room or feed token",
    description="The room's current event-feed token (`POST /v1/rooms/{room}/feed-token`).",
    example="q3F9xT0bW2mJ7cYkL8rD5sVh1nA4eG6u",
)
FEED_CURSOR: Final = Cursor(
    name="i",
    refusal="i is an event id from a previous nextUrl",
    description="Resume after this event id (from the previous answer's `nextUrl`).",
    example="1700000000125-0",
)


@dataclass(frozen=True, slots=True)
class Body:
    """A JSON body: its params, which are required, and rules that join fields."""

    params: tuple[Param, ...]
    required: tuple[str, ...]
    #: JSON Schema ``allOf`` entries (e.g. a field required for one role only).
    rules: tuple[Mapping[str, Any], ...] = field(default=())

    def schema(self, bounds: Bounds) -> dict[str, Any]:
        """The JSON Schema of the body."""
        out: dict[str, Any] = {
            "type": "object",
            "required": list(self.required),
            "properties": {p.name: p.schema(bounds) for p in self.params},
        }
        if self.rules:
            out["allOf"] = [dict(rule) for rule in self.rules]
        return out

    def example(self) -> dict[str, Any]:
        """An example body: every param's example."""
        return {p.name: p.example for p in self.params if p.example is not None}


OPEN_TAB_BODY: Final = Body(
    (
        CUSTOMER,
        CURRENCY,
        CAP,
        PAYMENT_METHOD,
        COUNTRY,
        COUNTRY_EVIDENCE,
        EMAIL,
        LANGUAGE,
        PROCESSOR,
    ),
    ("customer", "currency", "cap_minor", "payment_method"),
)
RAISE_CAP_BODY: Final = Body((CAP,), ("cap_minor",))
TICKET_BODY: Final = Body(
    (ROLE, SUBJECT, TICKET_NAME, CURRENCY, TICKET_TTL_S),
    ("role", "subject"),
    rules=(
        {
            "if": {"properties": {"role": {"const": Role.VIEWER.value}}},
            "then": {"required": ["currency"]},
        },
    ),
)
PAYOUT_BODY: Final = Body((PAYOUT_BP,), ("payout_bp",))
OVERLAY_BODY: Final = Body((ROOM, FEED_TOKEN), ("room", "token"))


# ---------------------------------------------------------------------------------------------
# Error codes


#: Every error code of the HTTP API, with its status and what it means (the document's
#: enumerations; a test checks every ApiError of the server is here, with this status).
ERRORS: Final[dict[str, tuple[int, str]]] = {
    "malformed_body": (400, "The body is not a JSON object."),
    "duplicate_key": (400, "The body repeats a key."),
    "invalid_id": (400, f"An id does not match {ID_PATTERN.pattern}."),
    "invalid_amount": (400, "An amount is not an integer number of minor units."),
    "invalid_currency": (400, "Not an ISO-4217 code this server accepts."),
    "invalid_field": (400, "A field has the wrong type or is out of its bounds."),
    "cap_out_of_range": (400, "The cap is outside the server's cap range."),
    "idempotency_key_required": (400, "The Idempotency-Key header is missing or invalid."),
    "gateway_refused": (400, "The processor refused the request as invalid."),
    "invalid_signature": (400, "A processor notice's signature does not verify."),
    "malformed_notice": (400, "A processor notice is not what the processor sends."),
    "malformed_batch": (400, "A collection batch file is not valid."),
    "unauthorized": (401, "Missing or wrong API key."),
    "invalid_token": (401, "Unknown room, or not its current feed token."),
    "card_declined": (402, "The card was declined (`decline_reason` says why)."),
    "customer_action_required": (
        402,
        "The customer must complete 3-D Secure (`action` has what the page needs).",
    ),
    "customer_flagged": (403, "A dispute flagged this customer; support clears it."),
    "support_key_required": (403, "The route needs a support key."),
    "not_a_demo_id": (403, "The demo acts on demo ids only."),
    "tab_not_found": (404, "No such tab."),
    "capture_not_found": (404, "No such capture."),
    "case_not_found": (404, "No such collection case."),
    "not_found": (404, "No such refund, dispute, tab or payment."),
    "demo_disabled": (404, "The demo backend is off."),
    "tab_not_open": (409, "The tab is not open."),
    "tab_already_open": (409, "The customer has an open tab in this currency (`tab_id`)."),
    "cap_not_raised": (409, "A cap only grows (`cap_minor` is the current one)."),
    "idempotency_key_reused": (409, "This key opened a tab in another currency."),
    "increment_unsupported": (409, "The processor cannot raise this hold."),
    "id_reused": (409, "This id was used for a different request."),
    "not_refundable": (409, "The tab, line or amount cannot be refunded."),
    "case_closed": (409, "The collection case is closed."),
    "not_written_off": (409, "Closed, or a payment is in flight."),
    "body_too_large": (413, "The body is larger than the route accepts."),
    "no_processor": (422, "No configured processor serves this request."),
    "internal_error": (500, "A bug; it is logged. Retry."),
    "unavailable": (503, "Redis is unavailable: retry."),
    "ledger_unavailable": (503, "The ledger database is unavailable: retry."),
    "gateway_unavailable": (503, "The processor did not answer: retry with the same key."),
    # Memberships (server/subscriptions_api.py, docs/subscriptions.md).
    "invalid_plan": (400, "A plan's definition breaks a rule (the message says which)."),
    "plan_not_found": (404, "No such plan."),
    "subscription_not_found": (404, "No such subscription."),
    "invoice_not_found": (404, "No such invoice or credit note."),
    "items_invalid": (422, "A quantity or add-ons the subscription's plan does not offer."),
    "plan_exists": (409, "A plan of that id exists with another definition."),
    "already_subscribed": (409, "The customer has a live subscription to the plan."),
    "not_allowed": (409, "The subscription's state does not allow it."),
    "plan_incompatible": (409, "Another kind, room or period length: not a plan change."),
    "charge_in_flight": (409, "A charge of the subscription is being made: retry shortly."),
    "nothing_owed": (409, "The subscription is not past due: no period is owed."),
    # The viewer page's membership panel (server/demo_membership.py, docs/pages.md).
    "checkout_not_found": (404, "No such membership checkout (a sign-up's way to the card page)."),
    "checkout_expired": (410, "The membership checkout expired: start the sign-up again."),
    "plan_unknown": (422, "No such plan."),
    "currency_not_sold": (422, "The plan has no price in the currency."),
    # A model's catalog (server/catalog_api.py, docs/purchases.md).
    # A customer's own refund request (server/refund_requests_api.py, docs/refunds.md).
    "too_many_attachments": (400, "More attachments than a refund request may carry."),
    "attachment_refused": (400, "An attachment is too large or not a PNG, JPEG or PDF."),
    "item_not_found": (404, "The room's catalog has no such item."),
    "purchase_not_found": (404, "The customer has no such purchase."),
    "catalog_full": (409, "The room's catalog holds its most items: remove one first."),
}


def codes_of(status: int, among: Iterable[str] | None = None) -> list[str]:
    """The error codes answered with ``status`` (of ``among``, when given)."""
    wanted = set(ERRORS) if among is None else set(among)
    return [code for code, (s, _) in ERRORS.items() if s == status and code in wanted]


#: The states a tab can be in, for the document's TabState enumeration.
TAB_STATES: Final = tuple(state.value for state in TabState)
