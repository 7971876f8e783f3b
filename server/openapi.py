"""The OpenAPI 3.1 document of the HTTP API (served at ``/openapi.json``).

Written out by hand, next to the routes it describes; a test checks that every route of the
app is in it and that every documented path exists. Left out on purpose: health and metrics
(for operators, see docs/server.md), the pages and their files, and the web pages' demo
backend (``/demo/…``, see docs/pages.md), which is off in production.
"""

from __future__ import annotations

from typing import Any

from server import collection_api, refunds_openapi, subscriptions_api
from server.demo_api import DEMO_BODY_BYTES_MAX, FEED_TOKEN_CHARS_MAX, OVERLAY_TICKET_TTL_S

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "additionalProperties": True,
        }
    },
}
_MINOR = {"type": "integer", "minimum": 0, "maximum": 9007199254740991}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}
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
        "kind": {"type": "string", "enum": ["tip", "session"]},
        "line_id": {"type": "string"},
        "seq": {"type": "integer"},
        "at_ms": {"type": "integer"},
        "room": _ID,
        "amount_minor": _MINOR,
        "payout_bp": {"type": "integer", "minimum": 0, "maximum": 10000},
        "share_minor": _MINOR,
        "seconds": {"type": "integer"},
        "rate_per_minute_minor": _MINOR,
    },
}
_TAB = {
    "type": "object",
    "required": ["tab_id", "customer", "currency", "state", "cap_minor", "accrued_minor", "lines"],
    "properties": {
        "tab_id": _ID,
        "customer": _ID,
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "state": {
            "type": "string",
            "enum": [
                "open",
                "settling",
                "settled",
                "failed",
                "collected",
                "written_off",
                "voided",
                "expired",
            ],
        },
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
                    "kind": {"type": "string", "enum": ["tip", "session"]},
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


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input (code names the field's problem).",
        401: "Missing or wrong API key (`unauthorized`).",
        402: "The card was declined (`card_declined`, with `decline_reason`), or the customer "
        "must complete 3-D Secure (`customer_action_required`, with `action`).",
        404: "No such tab (`tab_not_found`) or capture (`capture_not_found`).",
        409: "Conflict: `tab_already_open` (with `tab_id`), `tab_not_open`, `cap_not_raised`, "
        "`idempotency_key_reused`, `increment_unsupported`.",
        422: "No configured processor serves this request (`no_processor`).",
        413: "Body larger than 16 KiB (`body_too_large`).",
        503: "Redis, the ledger database or the gateway is unavailable (`unavailable`, "
        "`ledger_unavailable`, `gateway_unavailable`): retry.",
    }
    return {str(code): _json(_ERROR, text[code]) for code in codes}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": required, "properties": properties}
            }
        },
    }


_TAB_PATH_PARAMS = [
    {"name": "customer", "in": "path", "required": True, "schema": _ID},
    {"name": "tab_id", "in": "path", "required": True, "schema": _ID},
]
_ROOM_PARAM = [{"name": "room", "in": "path", "required": True, "schema": _ID}]


def document(server_url: str) -> dict[str, Any]:
    """The OpenAPI document, with ``server_url`` as its server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tipmeter HTTP API",
            "version": "1",
            "description": "Post Pay tabs, connection tickets and rooms, for the cam-site "
            "backend; the broadcast overlay's ticket exchange. Amounts are integers in minor "
            "units. See docs/http-api.md.",
        },
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/tabs": {
                "post": {
                    "summary": "Open a tab: authorize a hold for the cap, then open the tab.",
                    "parameters": [
                        {"name": "Idempotency-Key", "in": "header", "required": True, "schema": _ID}
                    ],
                    "requestBody": _body(
                        {
                            "customer": _ID,
                            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                            "cap_minor": _MINOR,
                            "payment_method": {"type": "string", "maxLength": 128},
                            "country": {
                                "type": "string",
                                "pattern": "^[A-Za-z]{2}$",
                                "description": "The customer's country, for routing.",
                            },
                            "processor": {
                                "type": "string",
                                "description": "The cam site's choice of processor.",
                            },
                        },
                        ["customer", "currency", "cap_minor", "payment_method"],
                    ),
                    "responses": {
                        "201": _json(_TAB, "The tab is open."),
                        "200": _json(_TAB, "A retry with the same Idempotency-Key: the same tab."),
                        **_errors(400, 401, 402, 409, 413, 422, 503),
                    },
                }
            },
            "/v1/customers/{customer}/tabs/{tab_id}": {
                "get": {
                    "summary": "A tab with its itemized lines.",
                    "parameters": _TAB_PATH_PARAMS,
                    "responses": {"200": _json(_TAB, "The tab."), **_errors(400, 401, 404, 503)},
                }
            },
            "/v1/customers/{customer}/tabs/{tab_id}/statement": {
                "get": {
                    "summary": "The tab's itemized statement: lines, totals per model, total, "
                    "and how its settlement ended.",
                    "parameters": _TAB_PATH_PARAMS,
                    "responses": {
                        "200": _json(_STATEMENT, "The statement."),
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/v1/captures/{capture_id}": {
                "get": {
                    "summary": "Find a payment: the statement of the tab a capture settled.",
                    "parameters": [
                        {
                            "name": "capture_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "maxLength": 255},
                        }
                    ],
                    "responses": {
                        "200": _json(_STATEMENT, "The statement of the settled tab."),
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/v1/customers/{customer}/tabs/{tab_id}/cap": {
                "post": {
                    "summary": "Raise the cap (the gateway raises the hold first).",
                    "parameters": _TAB_PATH_PARAMS,
                    "requestBody": _body({"cap_minor": _MINOR}, ["cap_minor"]),
                    "responses": {
                        "200": _json(_TAB, "The tab with its new cap."),
                        **_errors(400, 401, 402, 404, 409, 413, 503),
                    },
                }
            },
            "/v1/customers/{customer}/tabs/{tab_id}/settle": {
                "post": {
                    "summary": "Freeze the tab now and queue its settlement.",
                    "parameters": _TAB_PATH_PARAMS,
                    "responses": {
                        "202": _json(_TAB, "Frozen (state settling) and queued."),
                        **_errors(400, 401, 404, 409, 503),
                    },
                }
            },
            "/v1/tickets": {
                "post": {
                    "summary": "Mint a short-lived, single-use ticket for one WebSocket "
                    "connection.",
                    "requestBody": _body(
                        {
                            "role": {"type": "string", "enum": ["viewer", "model", "broadcast"]},
                            "subject": _ID,
                            "name": {"type": "string", "maxLength": 64},
                            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                            "ttl_s": {"type": "integer", "minimum": 1},
                        },
                        ["role", "subject"],
                    ),
                    "responses": {
                        "201": _json(
                            {
                                "type": "object",
                                "required": ["ticket", "expires_at_ms", "ws_url"],
                                "properties": {
                                    "ticket": {"type": "string"},
                                    "expires_at_ms": {"type": "integer"},
                                    "ws_url": {"type": "string"},
                                },
                            },
                            "The ticket.",
                        ),
                        **_errors(400, 401, 413),
                    },
                }
            },
            "/v1/rooms/{room}/payout": {
                "put": {
                    "summary": "Set the model's share of later charges (basis points).",
                    "parameters": _ROOM_PARAM,
                    "requestBody": _body(
                        {"payout_bp": {"type": "integer", "minimum": 0, "maximum": 10000}},
                        ["payout_bp"],
                    ),
                    "responses": {
                        "200": _json({"type": "object"}, "The new payout rate."),
                        **_errors(400, 401, 413, 503),
                    },
                }
            },
            "/v1/rooms/{room}/earnings": {
                "get": {
                    "summary": "The model's earnings: settled (from the ledger) per currency, "
                    "and accrued on tabs not settled yet.",
                    "parameters": _ROOM_PARAM,
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
                                                "gross_minor": {"type": "integer"},
                                                "share_minor": {"type": "integer"},
                                                "pending_minor": {"type": "integer"},
                                                "settlements": {"type": "integer"},
                                            },
                                        },
                                    },
                                    "accrued": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                    },
                                },
                            },
                            "The room's earnings.",
                        ),
                        **_errors(400, 401, 503),
                    },
                }
            },
            "/v1/rooms/{room}/feed-token": {
                "post": {
                    "summary": "A new token for the room's event feed (the previous one stops).",
                    "parameters": _ROOM_PARAM,
                    "responses": {
                        "201": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "token": {"type": "string"},
                                    "feed_url": {"type": "string"},
                                },
                            },
                            "The token and the feed's first URL.",
                        ),
                        **_errors(400, 401, 503),
                    },
                }
            },
            "/events/{room}/{token}/": {
                "get": {
                    "summary": "Long-poll of the room's events, in the Chaturbate Events API "
                    "shape.",
                    "security": [],
                    "parameters": [
                        *_ROOM_PARAM,
                        {
                            "name": "token",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "i",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "timeout",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer"},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["events", "nextUrl"],
                                "properties": {
                                    "events": {"type": "array"},
                                    "nextUrl": {"type": "string"},
                                },
                            },
                            "Events after `i`, and the URL to resume from.",
                        ),
                        **_errors(400, 503),
                        "401": _json(_ERROR, "Unknown room or token (`invalid_token`)."),
                    },
                }
            },
            "/overlay/ticket": {
                "post": {
                    "summary": "Trade a room's event-feed token for a ticket of one `broadcast` "
                    f"WebSocket connection, valid {OVERLAY_TICKET_TTL_S} s (how the broadcast "
                    "overlay follows the room; the feed token is the credential).",
                    "security": [],
                    "requestBody": _body(
                        {
                            "room": _ID,
                            "token": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": FEED_TOKEN_CHARS_MAX,
                            },
                        },
                        ["room", "token"],
                    ),
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
                        "400": _json(_ERROR, "The body is not a JSON object (`malformed_body`)."),
                        "401": _json(
                            _ERROR, "Unknown room, or not its current feed token (`invalid_token`)."
                        ),
                        "413": _json(
                            _ERROR,
                            f"Body larger than {DEMO_BODY_BYTES_MAX} bytes (`body_too_large`).",
                        ),
                        "503": _json(_ERROR, "Redis is unavailable (`unavailable`): retry."),
                    },
                }
            },
            **collection_api.openapi_paths(),
            **refunds_openapi.paths(),
            **subscriptions_api.openapi_paths(),
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "security": [],
                    "responses": {"200": {"description": "The OpenAPI document."}},
                }
            },
        },
    }
