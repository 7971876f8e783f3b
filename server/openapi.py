"""The OpenAPI 3.1 document of the HTTP API (served at ``/openapi.json``).

The inputs are drawn from the very params the operations check them with
(:mod:`server.api_contract`: the bounds are this server's settings), the error answers from its
table of error codes (each status lists the codes it may carry, in the one JSON shape), and the
tab's states from :class:`metering.lifecycle.TabState`, so the document cannot promise what the
server refuses. The answers' shapes are written here, next to the routes they describe; a test
checks that every route of the app is in it. Left out on purpose: health and metrics (for
operators, see docs/server.md), the pages and their files, and the web pages' demo backend
(``/demo/…``, see docs/pages.md), which is off in production.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clients.ids import ID_PATTERN
from server import catalog_api, collection_api, refunds_openapi, subscriptions_api
from server.api import BODY_BYTES_MAX, bounds_of, route
from server.api_contract import (
    AMOUNT_MAX_MINOR,
    CAPTURE_ID,
    CURRENCY,
    CUSTOMER,
    ERRORS,
    FEED_CURSOR,
    FEED_TIMEOUT,
    IDEMPOTENCY_KEY,
    OPEN_TAB_BODY,
    OVERLAY_BODY,
    PAYOUT_BODY,
    PAYOUT_BP,
    RAISE_CAP_BODY,
    ROOM,
    TAB_ID,
    TAB_STATES,
    TICKET_BODY,
    Body,
    Bounds,
    Param,
    codes_of,
)
from server.overlay import OVERLAY_BODY_BYTES_MAX, OVERLAY_TICKET_TTL_S
from server.runtime import Runtime

_MINOR: Final = {"type": "integer", "minimum": 0, "maximum": AMOUNT_MAX_MINOR}
_ID: Final = {"type": "string", "pattern": f"^{ID_PATTERN.pattern}$"}
_LINE = {
    "type": "object",
    "required": [
        "kind",
        "line_id",
        "seq",
        "at_ms",
        "room",
        "amount_minor",
        "payout_bp",
        "share_minor",
    ],
    "properties": {
        "kind": {"type": "string", "enum": ["tip", "session", "purchase"]},
        "line_id": {"type": "string"},
        "seq": {"type": "integer"},
        "at_ms": {"type": "integer"},
        "room": _ID,
        "amount_minor": _MINOR,
        "payout_bp": {"type": "integer", "minimum": 0, "maximum": 10000},
        "share_minor": _MINOR,
        "seconds": {"type": "integer"},
        "rate_per_minute_minor": _MINOR,
        # Purchase lines (docs/purchases.md): the item, its kind and the purchase's state.
        "item_id": {"type": "string"},
        "item_name": {"type": "string"},
        "item_kind": {"type": "string"},
        "state": {"type": "string"},
        "voided_minor": _MINOR,
    },
}
_TAB = {
    "type": "object",
    "required": ["tab_id", "customer", "currency", "state", "cap_minor", "accrued_minor", "lines"],
    "properties": {
        "tab_id": _ID,
        "customer": _ID,
        "currency": {"type": "string", "enum": list(CURRENCY.values)},
        "state": {"type": "string", "enum": list(TAB_STATES)},
        "cap_minor": _MINOR,
        "accrued_minor": _MINOR,
        "remaining_minor": _MINOR,
        "version": {"type": "integer"},
        "capture_before_ms": {"type": "integer"},
        "opened_at_ms": {"type": "integer"},
        "active_at_ms": {"type": "integer"},
        "freeze_reason": {"type": ["string", "null"]},
        "frozen_at_ms": {"type": ["integer", "null"]},
        "processor": {
            "type": "string",
            "description": "The processor holding the authorization (docs/processors.md).",
        },
        "lines": {"type": "array", "items": _LINE},
    },
}


_STATEMENT = {
    "type": "object",
    "required": [
        "tab_id",
        "customer",
        "currency",
        "state",
        "cap_minor",
        "total_minor",
        "platform_minor",
        "outcome",
        "freeze_reason",
        "captured_minor",
        "capture_id",
        "settled_at_ms",
        "decline_reason",
        "retryable",
        "model_shares",
        "lines",
        "groups",
        "by_model",
    ],
    "properties": {
        "tab_id": _ID,
        "customer": _ID,
        "currency": {"type": "string"},
        "state": {"type": "string"},
        "cap_minor": _MINOR,
        "total_minor": _MINOR,
        "platform_minor": _MINOR,
        "outcome": {
            "type": "string",
            "enum": ["", "captured", "declined", "voided", "expired"],
            "description": "How the settlement ended; empty until it has.",
        },
        "freeze_reason": {"type": "string"},
        "captured_minor": _MINOR,
        "capture_id": {"type": "string"},
        "settled_at_ms": {"type": "integer"},
        "decline_reason": {"type": "string"},
        "retryable": {"type": "boolean"},
        "authorizations": {
            "type": "array",
            "description": "Only for a tab raised by further holds: one capture per hold.",
            "items": {
                "type": "object",
                "properties": {"auth_ref": {"type": "string"}, "amount_minor": _MINOR},
            },
        },
        "note": {"type": "string"},
        "model_shares": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"room": _ID, "share_minor": _MINOR},
            },
        },
        "lines": {"type": "array", "items": _LINE},
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind", "room", "count", "amount_minor", "share_minor"],
                "properties": {
                    "kind": {"type": "string", "enum": ["tip", "session", "purchase"]},
                    "room": _ID,
                    "count": {"type": "integer"},
                    "amount_minor": _MINOR,
                    "share_minor": _MINOR,
                    "seconds": {"type": "integer"},
                    "rate_per_minute_minor": _MINOR,
                },
            },
        },
        "by_model": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "room": _ID,
                    "tips_minor": _MINOR,
                    "sessions_minor": _MINOR,
                    "session_seconds": {"type": "integer"},
                    "total_minor": _MINOR,
                    "share_minor": _MINOR,
                },
            },
        },
    },
}


def _error_schema(codes: Iterable[str]) -> dict[str, Any]:
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


_ERROR: Final = _error_schema(ERRORS)
#: What every route answers whatever it does: a bug, Redis or the ledger unavailable.
_ALWAYS: Final = ("internal_error", "unavailable", "ledger_unavailable")
#: What every route behind the API key answers too.
_KEYED: Final = ("unauthorized", *_ALWAYS)
#: What every route with a JSON body answers too.
_BODY: Final = ("malformed_body", "duplicate_key", "body_too_large")


def _json(schema: dict[str, Any], description: str, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _errors(*codes: str) -> dict[str, Any]:
    """The error answers of an operation that may refuse with ``codes``, by status: each
    status's ``code`` enumerates exactly the codes it may carry."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERRORS[code][0], []).append(code)
    out = {}
    for status, listed in sorted(by_status.items()):
        schema = _error_schema(listed)
        text = " ".join(f"`{code}`: {ERRORS[code][1]}" for code in listed)
        example = {"error": {"code": listed[0], "message": ERRORS[listed[0]][1]}}
        out[str(status)] = _json(schema, text, example)
    return out


def _body(body: Body, bounds: Bounds) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": body.schema(bounds), "example": body.example()}},
    }


def _param(param: Param, where: str, bounds: Bounds, *, required: bool = True) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": where,
        "required": required,
        "schema": param.schema(bounds),
    }


def _tab_params(bounds: Bounds) -> list[dict[str, Any]]:
    return [_param(CUSTOMER, "path", bounds), _param(TAB_ID, "path", bounds)]


_TICKET: Final = {
    "type": "object",
    "required": ["ticket", "expires_at_ms", "ws_url"],
    "properties": {
        "ticket": {"type": "string"},
        "expires_at_ms": {"type": "integer"},
        "ws_url": {"type": "string"},
    },
}
_PAYOUT: Final = {
    "type": "object",
    "required": ["room", "payout_bp"],
    "properties": {
        "room": _ID,
        "payout_bp": PAYOUT_BODY.schema(Bounds(0, 0, 0, 0))["properties"]["payout_bp"],
    },
}
#: One event of the long-poll feed, in the Chaturbate Events API shape (server/feed.py).
_FEED_EVENT: Final = {
    "type": "object",
    "required": ["method", "id", "object"],
    "properties": {
        "method": {"type": "string", "enum": ["tip"]},
        "id": {"type": "string", "description": "The event id: resume after it with `i`."},
        "object": {
            "type": "object",
            "required": ["broadcaster", "user", "tip"],
            "properties": {
                "broadcaster": _ID,
                "user": {
                    "type": "object",
                    "required": ["username"],
                    "properties": {
                        "username": {"type": "string"},
                        "inFanclub": {"type": "boolean"},
                        "hasTokens": {"type": "boolean"},
                        "isMod": {"type": "boolean"},
                        "recentTips": {"type": "string"},
                        "gender": {"type": "string"},
                        "subgender": {"type": "string"},
                    },
                },
                "tip": {
                    "type": "object",
                    "required": ["tokens", "isAnon", "message"],
                    "properties": {
                        "tokens": {"type": "integer", "minimum": 1},
                        "isAnon": {"type": "boolean"},
                        "message": {"type": "string"},
                        "tipId": {
                            "type": "string",
                            "description": "The client-minted tip id (not in the Chaturbate "
                            "shape).",
                        },
                    },
                },
            },
        },
    },
}


def _with_error_shapes(paths: dict[str, Any]) -> dict[str, Any]:
    """Give every error answer of ``paths`` the one JSON shape, its codes those of its status
    (for the routes whose error answers are described elsewhere, by their text), and every
    operation the answers any route may give (no key, a bug, Redis or the ledger down)."""
    for item in paths.values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            common = _errors(*(_ALWAYS if operation.get("security") == [] else _KEYED))
            for status, response in common.items():
                responses.setdefault(status, response)
            for status, response in responses.items():
                if int(status) >= 400 and response is not common.get(status):
                    schema = _error_schema(codes_of(int(status)))
                    response["content"] = {"application/json": {"schema": schema}}
    return paths


def _operations(bounds: Bounds) -> dict[str, Any]:
    return {
        "/v1/tabs": {
            "post": {
                "summary": "Open a tab: authorize a hold for the cap, then open the tab.",
                "parameters": [_param(IDEMPOTENCY_KEY, "header", bounds)],
                "requestBody": _body(OPEN_TAB_BODY, bounds),
                "responses": {
                    "201": _json(_TAB, "The tab is open."),
                    "200": _json(_TAB, "A retry with the same Idempotency-Key: the same tab."),
                    **_errors(
                        *_KEYED,
                        *_BODY,
                        "idempotency_key_required",
                        "invalid_id",
                        "invalid_currency",
                        "invalid_amount",
                        "invalid_field",
                        "cap_out_of_range",
                        "gateway_refused",
                        "card_declined",
                        "customer_action_required",
                        "customer_flagged",
                        "tab_already_open",
                        "idempotency_key_reused",
                        "no_processor",
                        "gateway_unavailable",
                    ),
                },
            }
        },
        "/v1/customers/{customer}/tabs/{tab_id}": {
            "get": {
                "summary": "A tab with its itemized lines.",
                "parameters": _tab_params(bounds),
                "responses": {
                    "200": _json(_TAB, "The tab."),
                    **_errors(*_KEYED, "invalid_id", "tab_not_found"),
                },
            }
        },
        "/v1/customers/{customer}/tabs/{tab_id}/statement": {
            "get": {
                "summary": "The tab's itemized statement: lines, totals per model, total, "
                "and how its settlement ended.",
                "parameters": _tab_params(bounds),
                "responses": {
                    "200": _json(_STATEMENT, "The statement."),
                    **_errors(*_KEYED, "invalid_id", "tab_not_found"),
                },
            }
        },
        "/v1/captures/{capture_id}": {
            "get": {
                "summary": "Find a payment: the statement of the tab a capture settled.",
                "parameters": [_param(CAPTURE_ID, "path", bounds)],
                "responses": {
                    "200": _json(_STATEMENT, "The statement of the settled tab."),
                    **_errors(*_KEYED, "capture_not_found", "tab_not_found"),
                },
            }
        },
        "/v1/customers/{customer}/tabs/{tab_id}/cap": {
            "post": {
                "summary": "Raise the cap (the gateway raises the hold first).",
                "parameters": _tab_params(bounds),
                "requestBody": _body(RAISE_CAP_BODY, bounds),
                "responses": {
                    "200": _json(_TAB, "The tab with its new cap."),
                    **_errors(
                        *_KEYED,
                        *_BODY,
                        "invalid_id",
                        "invalid_amount",
                        "cap_out_of_range",
                        "tab_not_found",
                        "tab_not_open",
                        "cap_not_raised",
                        "increment_unsupported",
                        "gateway_refused",
                        "card_declined",
                        "no_processor",
                        "gateway_unavailable",
                    ),
                },
            }
        },
        "/v1/customers/{customer}/tabs/{tab_id}/settle": {
            "post": {
                "summary": "Freeze the tab now and queue its settlement.",
                "parameters": _tab_params(bounds),
                "responses": {
                    "202": _json(_TAB, "Frozen (state settling) and queued."),
                    **_errors(*_KEYED, "invalid_id", "tab_not_found", "tab_not_open"),
                },
            }
        },
        "/v1/tickets": {
            "post": {
                "summary": "Mint a short-lived, single-use ticket for one WebSocket connection "
                "(a viewer's needs the currency of the tab it spends from).",
                "requestBody": _body(TICKET_BODY, bounds),
                "responses": {
                    "201": _json(
                        _TICKET,
                        "The ticket.",
                        {
                            "ticket": "v1.eyJpc3MiOi….sig",
                            "expires_at_ms": 1_700_000_060_000,
                            "ws_url": "ws://127.0.0.1:8000/ws",
                        },
                    ),
                    **_errors(*_KEYED, *_BODY, "invalid_id", "invalid_field", "invalid_currency"),
                },
            }
        },
        "/v1/rooms/{room}/payout": {
            "put": {
                "summary": "Set the model's share of later charges (basis points).",
                "parameters": [_param(ROOM, "path", bounds)],
                "requestBody": _body(PAYOUT_BODY, bounds),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["room", "payout_bp"],
                            "properties": {"room": _ID, "payout_bp": PAYOUT_BP.schema(bounds)},
                        },
                        "The new payout rate.",
                        {"room": "alice", "payout_bp": 6_000},
                    ),
                    **_errors(*_KEYED, *_BODY, "invalid_id", "invalid_field"),
                },
            }
        },
        "/v1/rooms/{room}/earnings": {
            "get": {
                "summary": "The model's earnings: settled (from the ledger) per currency, "
                "and accrued on tabs not settled yet.",
                "parameters": [_param(ROOM, "path", bounds)],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["room", "settled", "accrued"],
                            "properties": {
                                "room": _ID,
                                "settled": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "currency": {"type": "string"},
                                            "gross_minor": _MINOR,
                                            "share_minor": _MINOR,
                                            "pending_minor": _MINOR,
                                            "settlements": {"type": "integer"},
                                        },
                                    },
                                },
                                "accrued": {"type": "object", "additionalProperties": _MINOR},
                            },
                        },
                        "The room's earnings.",
                    ),
                    **_errors(*_KEYED, "invalid_id"),
                },
            }
        },
        "/v1/rooms/{room}/feed-token": {
            "post": {
                "summary": "A new token for the room's event feed (the previous one stops).",
                "parameters": [_param(ROOM, "path", bounds)],
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["room", "token", "feed_url"],
                            "properties": {
                                "room": _ID,
                                "token": {"type": "string"},
                                "feed_url": {"type": "string"},
                            },
                        },
                        "The token and the feed's first URL.",
                    ),
                    **_errors(*_KEYED, "invalid_id"),
                },
            }
        },
        "/events/{room}/{token}/": {
            "get": {
                "summary": "Long-poll of the room's events, in the Chaturbate Events API shape.",
                "security": [],
                "parameters": [
                    {"name": "room", "in": "path", "required": True, "schema": _ID},
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
                    _param(FEED_CURSOR, "query", bounds, required=False),
                    _param(FEED_TIMEOUT, "query", bounds, required=False),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["events", "nextUrl"],
                            "properties": {
                                "events": {"type": "array", "items": _FEED_EVENT},
                                "nextUrl": {"type": "string"},
                            },
                        },
                        "Events after `i`, and the URL to resume from.",
                    ),
                    **_errors(*_ALWAYS, "invalid_field", "invalid_token"),
                },
            }
        },
        "/overlay/ticket": {
            "post": {
                "summary": "Trade a room's event-feed token for a ticket of one `broadcast` "
                f"WebSocket connection, valid {OVERLAY_TICKET_TTL_S} s (how the broadcast "
                "overlay follows the room; the feed token is the credential). Bodies are at "
                f"most {OVERLAY_BODY_BYTES_MAX} bytes.",
                "security": [],
                "requestBody": _body(OVERLAY_BODY, bounds),
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["ticket", "expires_at_ms"],
                            "properties": {
                                "ticket": {"type": "string"},
                                "expires_at_ms": {"type": "integer"},
                            },
                        },
                        "The ticket.",
                    ),
                    **_errors(*_ALWAYS, *_BODY, "invalid_token"),
                },
            }
        },
    }


def document(server_url: str, bounds: Bounds) -> dict[str, Any]:
    """The OpenAPI document, with ``server_url`` as its server and this server's ``bounds``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tipmeter HTTP API",
            "version": "1",
            "description": "Post Pay tabs, connection tickets and rooms, for the cam-site "
            "backend; the broadcast overlay's ticket exchange. Amounts are integers in minor "
            f"units. Bodies are JSON objects of at most {BODY_BYTES_MAX} bytes. Every error "
            'answer is `{"error": {"code", "message"}}`. See docs/http-api.md.',
        },
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR, "TabState": {"type": "string", "enum": list(TAB_STATES)}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            **_operations(bounds),
            **_with_error_shapes(collection_api.openapi_paths()),
            **_with_error_shapes(refunds_openapi.paths()),
            **_with_error_shapes(catalog_api.openapi_paths()),  # purchases (issue 17)
            **_with_error_shapes(subscriptions_api.openapi_paths()),
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "security": [],
                    "responses": {"200": {"description": "The OpenAPI document."}},
                }
            },
        },
    }


async def openapi_document(request: Request, rt: Runtime) -> Response:
    """``GET /openapi.json``."""
    return Response(
        orjson.dumps(document(rt.settings.base_url, bounds_of(rt))), media_type="application/json"
    )


def routes() -> list[Route]:
    """The document's own route."""
    return [route("GET", "/openapi.json", "openapi", openapi_document, authenticated=False)]
