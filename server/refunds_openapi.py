"""The OpenAPI description of the refunds routes (``server.refunds_api``), merged into
``/openapi.json`` by :mod:`server.openapi`. docs/refunds.md has the flows and the fields."""

from __future__ import annotations

from typing import Any, Final

_OBJECT: Final = {"type": "object"}
_ERROR: Final = {
    "type": "object",
    "properties": {"error": {"type": "object", "required": ["code", "message"]}},
}


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _OBJECT}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _param(name: str, where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}


_NOT_FOUND: Final = _error("No such refund, dispute, tab or payment (`not_found`).")
_BAD: Final = _error("Invalid input (`invalid_id`, `invalid_field`, `invalid_amount`).")


def _found(summary: str, name: str, answer: dict[str, Any], method: str = "get") -> dict[str, Any]:
    """The path item of one thing named by the path parameter ``name``: 200 with ``answer``,
    404 when there is no such thing."""
    return {
        method: {
            "summary": summary,
            "parameters": [_param(name)],
            "responses": {"200": answer, "404": _NOT_FOUND},
        }
    }


def _refund_body(properties: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body asking for a refund: ``refund_id`` and ``reason`` always,
    with the route's other ``properties``."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["refund_id", "reason"],
                    "properties": properties,
                }
            }
        },
    }


def paths() -> dict[str, Any]:
    """The refunds routes' OpenAPI path items."""
    refund_body = _refund_body(
        {
            "refund_id": {"type": "string"},
            "customer": {"type": "string"},
            "tab_id": {"type": "string"},
            "capture_id": {"type": "string"},
            "lines": {"type": "array"},
            "amount_minor": {"type": "integer", "minimum": 1},
            "reason": {"type": "string"},
            "override": {
                "type": "object",
                "properties": {"by": {"type": "string"}, "reason": {"type": "string"}},
            },
        }
    )
    return {
        "/v1/refunds": {
            "post": {
                "summary": "Refund a settled tab, chosen lines or an amount, by the site's "
                "policy; idempotent by refund_id.",
                "requestBody": refund_body,
                "responses": {
                    "201": _answer("The refund, with the policy's decision and its status."),
                    "200": _answer("The same refund_id asked before: its refund."),
                    "400": _BAD,
                    "403": _error("An override without the support key."),
                    "404": _NOT_FOUND,
                    "409": _error("`id_reused` or `not_refundable`."),
                },
            }
        },
        "/v1/refunds/{refund_id}": _found("A refund.", "refund_id", _answer("The refund.")),
        "/v1/refunds/{refund_id}/consent": _found(
            "The model's answer to a refund awaiting her consent.",
            "refund_id",
            _answer("The refund."),
            "post",
        ),
        "/v1/disputes/notices/{processor}": {
            "post": {
                "summary": "A processor's signed dispute notice (idempotent by dispute id).",
                "security": [],
                "parameters": [_param("processor")],
                "responses": {
                    "201": _answer("The dispute, opened now."),
                    "200": _answer("The dispute, known before."),
                    "400": _error("`invalid_signature` or `malformed_notice`."),
                    "404": _NOT_FOUND,
                },
            }
        },
        "/v1/sandbox/disputes": {
            "post": {
                "summary": "The sandbox raises (or closes) a dispute of a capture.",
                "responses": {"201": _answer("The dispute."), "404": _NOT_FOUND},
            }
        },
        "/v1/disputes/ratio": {
            "get": {
                "summary": "Disputes over captured settlements per processor in a month.",
                "parameters": [_param("month", "query")],
                "responses": {"200": _answer("The ratios, with the alert level.")},
            }
        },
        "/v1/disputes/{dispute_id}": _found("A dispute.", "dispute_id", _answer("The dispute.")),
        "/v1/disputes/{dispute_id}/evidence": _found(
            "The dispute's evidence package, from the ledger.",
            "dispute_id",
            _answer("The package."),
        ),
        "/v1/disputes/{dispute_id}/evidence.html": _found(
            "The evidence package as a printable page.", "dispute_id", {"description": "HTML."}
        ),
        "/v1/customers/{customer}/flag": {
            "get": {
                "summary": "The customer's standing dispute flag.",
                "parameters": [_param("customer")],
                "responses": {"200": _answer("The flag."), "404": _NOT_FOUND},
            },
            "delete": {
                "summary": "Support clears the flag (support key; `by` in the query).",
                "parameters": [_param("customer"), _param("by", "query")],
                "responses": {
                    "200": _answer("Cleared."),
                    "403": _error("No support key."),
                    "404": _NOT_FOUND,
                },
            },
        },
        "/v1/payments/{number}": {
            "get": {
                "summary": "A tab and its whole history, by any number: capture id, processor "
                "transaction id, authorization, refund id, dispute id, tab id, tip id.",
                "parameters": [_param("number")],
                "responses": {"200": _answer("The payment's history."), "404": _NOT_FOUND},
            }
        },
        **_customer_paths(),
    }


def _customer_paths() -> dict[str, Any]:
    """Customers' own refund requests (``server.refund_requests_api``)."""
    tab = [_param("customer"), _param("tab_id")]
    request_body = _refund_body(
        {
            "refund_id": {"type": "string"},
            "reason": {"type": "string"},
            "note": {"type": "string", "maxLength": 2000},
            "lines": {"type": "array", "items": {"type": "string"}},
            "attachments": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "required": ["content_base64"],
                    "properties": {
                        "filename": {"type": "string"},
                        "content_base64": {"type": "string"},
                    },
                },
            },
        }
    )
    return {
        "/v1/customers/{customer}/tabs/{tab_id}/refund-requests": {
            "post": {
                "summary": "A customer's own refund request from her statement (reason, lines, "
                "PNG/JPEG/PDF attachments checked by content), decided by the site's policy; "
                "idempotent by refund_id.",
                "parameters": tab,
                "requestBody": request_body,
                "responses": {
                    "201": _answer("The request as the customer's statement shows it."),
                    "200": _answer("The same request again."),
                    "400": _error("Invalid input, `attachment_refused`, `too_many_attachments`."),
                    "404": _NOT_FOUND,
                    "409": _error("`id_reused`, `not_refundable`."),
                },
            }
        },
        "/v1/customers/{customer}/tabs/{tab_id}/refunds": {
            "get": {
                "summary": "What the customer's statement shows of refunds: each line with what "
                "may still be asked back, every refund and request with its state.",
                "parameters": tab,
                "responses": {"200": _answer("The tab's refunds."), "404": _NOT_FOUND},
            }
        },
        "/v1/refunds/{refund_id}/attachments/{n}": {
            "get": {
                "summary": "A request's attachment, for support staff only (support key), as a "
                "download (`application/octet-stream`, `Content-Disposition: attachment`).",
                "parameters": [_param("refund_id"), _param("n")],
                "responses": {
                    "200": {"description": "The file's bytes."},
                    "403": _error("No support key."),
                    "404": _NOT_FOUND,
                },
            }
        },
    }
