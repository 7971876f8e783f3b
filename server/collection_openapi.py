"""The OpenAPI description of the collection routes (:mod:`server.collection_api`), merged
into ``/openapi.json`` by :mod:`server.openapi`. Parameters and bodies are drawn from the
params the routes check their inputs with (:mod:`server.collection_contract`), a batch's rows
from the bounds :mod:`settlement.collection.batch` checks them against; docs/collection.md has
the flows and the answers' fields.
"""

from __future__ import annotations

from dataclasses import fields
from enum import StrEnum
from typing import Any, Final, get_type_hints

from metering.money import CURRENCY_EXPONENTS
from server.api_contract import CUSTOMER, TAB_ID, Bounds
from server.collection_contract import BATCH_ID, CASE_ID, LINK_BODY
from server.openapi_parts import (
    INTEGER,
    OBJECT,
    TEXT,
    answer,
    answer_object,
    array_of,
    operation,
    or_null,
)
from settlement.collection.batch import (
    BATCH_ROWS_MAX,
    LANGUAGES,
    ROW_AMOUNT_MAX_MINOR,
    ROW_CUSTOMER_CHARS_MAX,
    ROW_EMAIL_CHARS_MAX,
)
from settlement.collection.cases import Case


def _of(hint: Any) -> dict[str, Any]:
    """The answer schema of a field of ``hint``'s type."""
    if hint is int:
        return INTEGER
    if hint is str:
        return TEXT
    if hint == int | None:
        return or_null(INTEGER)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return {"enum": [member.value for member in hint]}
    raise TypeError(f"no answer schema for {hint!r}")  # pragma: no cover - a new field's type


_CASE_HINTS: Final = get_type_hints(Case)
#: A case as the API answers it (settlement.collection.collector.Collector.case): the ledger's
#: fields of the case, drawn from :class:`~settlement.collection.cases.Case`, its attempts and
#: its history.
CASE: Final = answer_object(
    {
        **{field.name: _of(_CASE_HINTS[field.name]) for field in fields(Case)},
        "attempts": array_of(
            answer_object(
                {
                    "attempt_no": INTEGER,
                    "source": TEXT,
                    "status": TEXT,
                    "decline_reason": TEXT,
                    "reason_words": TEXT,
                    "capture_id": TEXT,
                    "started_at_ms": INTEGER,
                }
            )
        ),
        "history": array_of(
            answer_object(
                {
                    "seq": INTEGER,
                    "event": TEXT,
                    "from": TEXT,
                    "to": TEXT,
                    "detail": TEXT,
                    "at_ms": INTEGER,
                }
            )
        ),
    }
)
#: A new pay link (its URL is answered once), and the notices sent with it.
LINK: Final = answer_object(
    {
        "case_id": TEXT,
        "url": TEXT,
        "sent": array_of(answer_object({"channel": TEXT, "code": TEXT})),
        "expires_at_ms": INTEGER,
        "opens_max": INTEGER,
        "failed_max": INTEGER,
    }
)

#: One row of a JSON batch (each row is checked apart: a bad one is reported, not refused).
_ROW: Final = {
    "type": "object",
    "required": ["customer", "amount_minor", "currency"],
    "properties": {
        "customer": {
            "type": "string",
            "minLength": 1,
            "maxLength": ROW_CUSTOMER_CHARS_MAX,
            "pattern": "^[^/]*$",
        },
        "amount_minor": {"type": "integer", "minimum": 1, "maximum": ROW_AMOUNT_MAX_MINOR},
        "currency": {"type": "string", "enum": list(CURRENCY_EXPONENTS)},
        "phone": {"type": "string", "description": "International form: + and 7 to 15 digits."},
        "email": {"type": "string", "maxLength": ROW_EMAIL_CHARS_MAX},
        "language": {"type": "string", "enum": list(LANGUAGES)},
    },
    "description": "A phone or an e-mail is needed to send the link.",
}
_BATCH: Final = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["rows"],
                "properties": {
                    "rows": {"type": "array", "maxItems": BATCH_ROWS_MAX, "items": _ROW}
                },
            }
        },
        "text/csv": {
            "schema": {
                "type": "string",
                "description": "A header row naming the fields of a JSON row, then at most "
                f"{BATCH_ROWS_MAX} rows.",
            }
        },
    },
}


def paths(bounds: Bounds) -> dict[str, Any]:
    """The collection routes' OpenAPI path items, with this server's ``bounds``."""
    case = (CASE_ID,)
    found = ("case_not_found",)
    return {
        "/v1/collection/cases/{case_id}": {
            "get": operation(
                "A collection case, its attempts and its history.",
                bounds,
                path=case,
                answers={"200": answer(CASE, "The case.")},
            )
        },
        "/v1/collection/cases/{case_id}/links": {
            "post": operation(
                "Online start: a new pay link for one case (its URL is answered once).",
                bounds,
                path=case,
                body=LINK_BODY,
                answers={"201": answer(LINK, "The link's URL and limits.")},
                refusals=("case_closed",),
            )
        },
        "/v1/collection/cases/{case_id}/write-off": {
            "post": operation(
                "Give the debt up (ledger entry `collection_write_off`).",
                bounds,
                path=case,
                answers={"200": answer(CASE, "The case, written off.")},
                refusals=("not_written_off",),
            )
        },
        "/v1/customers/{customer}/tabs/{tab_id}/collection": {
            "get": operation(
                "The collection case of a declined or expired tab.",
                bounds,
                answers={"200": answer(CASE, "The case.")},
                refusals=found,
            )
            | {"parameters": [_path(CUSTOMER.name), _path(TAB_ID.name)]},
        },
        "/v1/collection/batches": {
            "post": operation(
                "Batch start: a CSV or JSON list of debts; a case and a link per good row, "
                "sent; a report of every row.",
                bounds,
                headers=(BATCH_ID,),
                answers={"200": answer(OBJECT, "The per-row report.")},
                refusals=("malformed_batch", "body_too_large"),
            )
            | {"requestBody": _BATCH},
        },
        "/v1/collection/sweep": {
            "post": operation(
                "Run one collection sweep now: open cases, due retries, closings.",
                bounds,
                answers={"200": answer(OBJECT, "What the sweep did.")},
            )
        },
    }


def _path(name: str) -> dict[str, Any]:
    """A path parameter the route reads as it comes (a case id is made of the two)."""
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
