"""The pieces every part of ``/openapi.json`` is drawn with: the one error shape, an
operation's error answers by status, its parameters and JSON body from the declared params
(:mod:`server.api_contract`), and :func:`operation`, which lists an operation's error codes from
the params it checks, so the codes a refusal carries cannot be left out of the document.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from clients.ids import ID_PATTERN
from server.api_contract import (
    AMOUNT_MAX_MINOR,
    ERRORS,
    Body,
    Bounds,
    Either,
    Items,
    Param,
    Record,
)

#: An amount in minor units, as answers carry it.
MINOR: Final = {"type": "integer", "minimum": 0, "maximum": AMOUNT_MAX_MINOR}
#: An id, as answers carry it.
ID: Final = {"type": "string", "pattern": f"^{ID_PATTERN.pattern}$"}
#: What every route answers whatever it does: a bug, Redis or the ledger unavailable.
ALWAYS: Final = ("internal_error", "unavailable", "ledger_unavailable")
#: What every route behind the API key answers too.
KEYED: Final = ("unauthorized", *ALWAYS)
#: What every route with a JSON body answers too.
BODY_ERRORS: Final = ("malformed_body", "duplicate_key", "body_too_large")
#: An answer whose fields the route's docs page lists.
OBJECT: Final = {"type": "object"}


#: Text, as answers carry it.
TEXT: Final = {"type": "string"}
#: A count or a time in milliseconds, as answers carry it.
INTEGER: Final = {"type": "integer"}
#: An instant, as answers read from the ledger carry it (ISO 8601 with its offset).
INSTANT: Final = {"type": "string", "format": "date-time"}


def or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def array_of(schema: dict[str, Any]) -> dict[str, Any]:
    """A list of ``schema``."""
    return {"type": "array", "items": schema}


def answer_object(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An answer object that carries exactly ``fields``, every one of them (the tests check
    the server's answers against it: tests/support/conformance.py)."""
    return {
        "type": "object",
        "properties": fields,
        "required": list(fields),
        "additionalProperties": False,
    }


def error_schema(codes: Iterable[str]) -> dict[str, Any]:
    """Every error answer: ``{"error": {"code", "message", …}}`` (the extra fields are the
    code's), with ``code`` one of ``codes``."""
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": list(codes)},
                    "message": {"type": "string", "description": "For a person."},
                },
                "additionalProperties": True,
            }
        },
    }


def answer(schema: dict[str, Any], description: str, example: Any = None) -> dict[str, Any]:
    """A JSON answer of ``schema``."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def errors(*codes: str) -> dict[str, Any]:
    """The error answers of an operation that may refuse with ``codes``, by status: each
    status's ``code`` enumerates exactly the codes it may carry."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERRORS[code][0], []).append(code)
    out = {}
    for status, listed in sorted(by_status.items()):
        schema = error_schema(listed)
        text = " ".join(f"`{code}`: {ERRORS[code][1]}" for code in listed)
        example = {"error": {"code": listed[0], "message": ERRORS[listed[0]][1]}}
        out[str(status)] = answer(schema, text, example)
    return out


def request_body(body: Body, bounds: Bounds) -> dict[str, Any]:
    """A JSON request body (one with no required field may be left out: ``{}``)."""
    return {
        "required": bool(body.required),
        "content": {"application/json": {"schema": body.schema(bounds), "example": body.example()}},
    }


def parameter(param: Param, where: str, bounds: Bounds, *, required: bool = True) -> dict[str, Any]:
    """A path, query or header parameter."""
    return {
        "name": param.name,
        "in": where,
        "required": required,
        "schema": param.schema(bounds),
    }


def param_codes(param: Param) -> Iterator[str]:
    """The error codes ``param`` (and any param inside it) refuses with."""
    yield param.code
    if isinstance(param, Either):
        for option in param.options:
            yield from param_codes(option)
    elif isinstance(param, Items):
        yield from param_codes(param.item)
    elif isinstance(param, Record):
        for inner in param.fields:
            yield from param_codes(inner)


def operation(
    summary: str,
    bounds: Bounds,
    *,
    answers: dict[str, Any],
    path: Sequence[Param] = (),
    query: Sequence[Param] = (),
    required_query: Sequence[Param] = (),
    headers: Sequence[Param] = (),
    body: Body | None = None,
    refusals: Iterable[str] = (),
    public: bool = False,
) -> dict[str, Any]:
    """One operation: its parameters and body drawn from the params it checks, its error answers
    the codes those params refuse with, ``refusals`` (the operation's own) and what every route
    answers (``public``: no API key)."""
    params = [
        *(parameter(p, "path", bounds) for p in path),
        *(parameter(p, "query", bounds, required=False) for p in query),
        *(parameter(p, "query", bounds) for p in required_query),
        *(parameter(p, "header", bounds) for p in headers),
    ]
    checked = [*path, *query, *required_query, *headers, *(body.params if body else ())]
    codes = [
        *(ALWAYS if public else KEYED),
        *(BODY_ERRORS if body else ()),
        *(code for param in checked for code in param_codes(param)),
        *refusals,
    ]
    out: dict[str, Any] = {"summary": summary}
    if public:
        out["security"] = []
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = request_body(body, bounds)
    out["responses"] = {**answers, **errors(*codes)}
    return out
