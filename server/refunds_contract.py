"""The contract of the refunds, disputes and refund-request routes, declared once.

:mod:`server.refunds_api` and :mod:`server.refund_requests_api` check their inputs with these
params (``REFUND_ID.check(value)`` raises the answer's :class:`~server.api_contract.ApiError`),
and :mod:`server.refunds_openapi` draws the same objects as the routes' JSON Schemas in
``/openapi.json``: the document states what the server refuses, and
tests/server/test_openapi.py probes each param at its bounds (see :mod:`server.api_contract`
for the kinds of param).
"""

from __future__ import annotations

import re
from typing import Final

from server.api_contract import (
    AMOUNT_MAX_MINOR,
    CAPTURE_ID_CHARS_MAX,
    CUSTOMER,
    ROOM,
    TAB_ID,
    Body,
    Either,
    Flag,
    Integer,
    Items,
    OneOf,
    Pattern,
    Record,
    Text,
    id_param,
    nullable,
)
from settlement.refunds.attachments import ATTACHMENT_BYTES_MAX, ATTACHMENTS_MAX
from settlement.refunds.policy import Reason

#: Longest a written reason (an override, a dispute's) may be, in characters.
REASON_CHARS_MAX: Final = 500
#: Longest number ``GET /v1/payments/{number}`` looks for.
NUMBER_CHARS_MAX: Final = 255
#: Line ids named by one refund at most.
LINES_MAX: Final = 1_000
#: Lines one customer's request names at most.
REQUEST_LINES_MAX: Final = 200
#: Longest line id, in characters.
LINE_ID_CHARS_MAX: Final = 80
#: Longest note a customer writes, in characters (the database holds the same bound).
NOTE_CHARS_MAX: Final = 2_000
#: Largest refund-request body: the attachments in base64 (4 characters for each 3 bytes) and
#: the rest.
REQUEST_BYTES_MAX: Final = ATTACHMENTS_MAX * (ATTACHMENT_BYTES_MAX * 4 // 3 + 4) + 65_536
#: A sandbox dispute's fee when the request names none, in minor units.
SANDBOX_FEE_MINOR_DEFAULT: Final = 1_500


def _printable(name: str, chars_max: int, example: str) -> Text:
    """Printable text on one line of 1 … ``chars_max`` characters."""
    return Text(
        name=name,
        chars_min=1,
        chars_max=chars_max,
        printable=True,
        refusal=f"{name} must be printable text, 1..{chars_max}",
        example=example,
    )


REFUND_ID: Final = id_param("refund_id", "The client-minted refund id (retries are safe).", "rf_1")
REASON: Final = OneOf(
    name="reason",
    values=tuple(reason.value for reason in Reason),
    refusal=f"reason must be one of {', '.join(Reason)}",
    description="Why the money goes back (docs/refunds.md has the policy per reason).",
    example=Reason.CUSTOMER_REQUEST.value,
)
REFUND_CAPTURE_ID: Final = Text(
    name="capture_id",
    chars_min=1,
    chars_max=CAPTURE_ID_CHARS_MAX,
    code="not_found",
    status=404,
    refusal="no such capture",
    description="The processor's capture id, instead of `customer` and `tab_id`.",
    example="cap_3Qx9",
)
REFUND_AMOUNT: Final = Integer(
    name="amount_minor",
    minimum=1,
    maximum=AMOUNT_MAX_MINOR,
    code="invalid_amount",
    refusal="amount_minor must be a positive integer of minor units",
    description="How much goes back, in minor units (none: all that may).",
    example=500,
)
LINE_ID: Final = Text(
    name="line_id",
    chars_min=1,
    chars_max=LINE_ID_CHARS_MAX,
    refusal=f"each line is a line id of 1..{LINE_ID_CHARS_MAX} characters",
    example="t:tip-1",
)
REFUND_LINES: Final = Items(
    name="lines",
    items_max=LINES_MAX,
    item=Either(
        name="line",
        options=(
            LINE_ID,
            Record(
                name="line",
                fields=(LINE_ID, nullable(REFUND_AMOUNT)),
                required=("line_id",),
                refusal="each line is a line id or {line_id, amount_minor}",
            ),
        ),
        refusal="each line is a line id or {line_id, amount_minor}",
    ),
    refusal=f"lines must be a list of at most {LINES_MAX}",
    description="The lines refunded (a line id, or a line id with the part of it refunded); "
    "none: the whole tab.",
)
WRITTEN_REASON: Final = _printable("reason", REASON_CHARS_MAX, "goodwill after a call")
BY: Final = id_param("by", "Who answers: the model's or the support agent's id.", "alice")
OVERRIDE: Final = Record(
    name="override",
    fields=(id_param("by", "The support agent's id.", "agent7"), WRITTEN_REASON),
    required=("by", "reason"),
    refusal="override is {by, reason}",
    description="Support overrides the policy (needs the `Tipmeter-Support-Key` header).",
)
REFUND_BODY: Final = Body(
    (
        REFUND_ID,
        REASON,
        CUSTOMER,
        TAB_ID,
        REFUND_CAPTURE_ID,
        REFUND_LINES,
        nullable(REFUND_AMOUNT),
        OVERRIDE,
    ),
    ("refund_id", "reason"),
    rules=({"anyOf": [{"required": ["customer", "tab_id"]}, {"required": ["capture_id"]}]},),
)
ACCEPT: Final = Flag(
    name="accept",
    refusal="accept must be true or false",
    description="The model accepts (true) or declines (false) the refund.",
    example=True,
)
CONSENT_BODY: Final = Body((ACCEPT, BY, ROOM), ("accept", "by"))
DISPUTE_STATUS: Final = OneOf(
    name="status",
    values=("open", "won", "lost"),
    refusal="status must be open, won or lost",
    example="open",
)
SANDBOX_FEE: Final = Integer(
    name="fee_minor",
    minimum=0,
    maximum=AMOUNT_MAX_MINOR,
    code="invalid_amount",
    refusal="fee_minor must be a whole number of minor units",
    description=f"The dispute fee (default {SANDBOX_FEE_MINOR_DEFAULT}).",
    example=SANDBOX_FEE_MINOR_DEFAULT,
)
SANDBOX_DISPUTE_BODY: Final = Body(
    (
        REFUND_CAPTURE_ID,
        id_param("dispute_id", "Default: `dp_` and the capture id.", "dp_cap_3Qx9"),
        REFUND_AMOUNT,
        SANDBOX_FEE,
        WRITTEN_REASON,
        DISPUTE_STATUS,
    ),
    ("capture_id",),
)
DISPUTE_ID: Final = _printable("dispute_id", REASON_CHARS_MAX, "dp_cap_3Qx9")
NOTICE_PROCESSOR: Final = id_param("processor", "The processor sending the notice.", "sandbox")
MONTH: Final = Pattern(
    name="month",
    pattern=re.compile(r"[1-9][0-9]{3}-(0[1-9]|1[0-2])"),
    refusal="month must be YYYY-MM",
    description="The calendar month (default: this one).",
    example="2026-11",
)
NUMBER: Final = _printable("number", NUMBER_CHARS_MAX, "cap_3Qx9")
NOTE: Final = Text(
    name="note",
    chars_max=NOTE_CHARS_MAX,
    refusal=f"note is text of at most {NOTE_CHARS_MAX}",
    description="The customer's words (characters that are not printable are dropped, "
    "line breaks kept).",
    example="The show froze after a minute.",
)
REQUEST_LINES: Final = Items(
    name="lines",
    items_max=REQUEST_LINES_MAX,
    item=LINE_ID,
    refusal=f"lines is a list of at most {REQUEST_LINES_MAX} line ids",
    description="The lines asked back (none: the whole tab).",
)
ATTACHMENTS: Final = nullable(
    Items(
        name="attachments",
        items_max=ATTACHMENTS_MAX,
        item=Record(
            name="attachment",
            fields=(
                Text(name="filename", chars_max=REQUEST_BYTES_MAX, refusal="filename is text"),
                Text(
                    name="content_base64",
                    chars_max=REQUEST_BYTES_MAX,
                    refusal="content_base64 is base64 text",
                    description=f"The file in base64: a PNG, JPEG or PDF (checked by content) "
                    f"of at most {ATTACHMENT_BYTES_MAX} bytes, else `attachment_refused`.",
                ),
            ),
            required=("content_base64",),
            refusal="an attachment is {filename?, content_base64}",
        ),
        code="too_many_attachments",
        refusal=f"at most {ATTACHMENTS_MAX} attachments a request",
    )
)
REFUND_REQUEST_BODY: Final = Body(
    (REFUND_ID, REASON, NOTE, REQUEST_LINES, ATTACHMENTS), ("refund_id", "reason")
)
#: An attachment's number in its request (1 …).
ATTACHMENT_N: Final = Pattern(
    name="n",
    pattern=re.compile(f"[1-{ATTACHMENTS_MAX}]"),
    code="not_found",
    status=404,
    refusal=f"attachments are numbered 1..{ATTACHMENTS_MAX}",
    example="1",
)
