"""The OpenAPI description of the refunds, disputes and refund-request routes
(:mod:`server.refunds_api`, :mod:`server.refund_requests_api`), merged into ``/openapi.json``
by :mod:`server.openapi`. Every parameter and body is drawn from the params the routes check
their inputs with (:mod:`server.refunds_contract`), and every operation's error codes from the
codes those params refuse with and the service's outcomes. docs/refunds.md has the flows and
the answers' fields.
"""

from __future__ import annotations

from typing import Any, Final

from server.api_contract import CUSTOMER, TAB_ID, Bounds
from server.openapi_parts import (
    ID,
    INSTANT,
    MINOR,
    OBJECT,
    TEXT,
    answer,
    answer_object,
    array_of,
    operation,
    or_null,
)
from server.refunds_contract import (
    ATTACHMENT_N,
    BY,
    CONSENT_BODY,
    DISPUTE_ID,
    MONTH,
    NOTICE_PROCESSOR,
    NUMBER,
    REFUND_BODY,
    REFUND_ID,
    REFUND_REQUEST_BODY,
    REQUEST_BYTES_MAX,
    SANDBOX_DISPUTE_BODY,
)
from settlement.refunds.notices import NOTICE_BYTES_MAX

#: What the refunds service may answer besides the answer (``server.refunds_api.call_service``).
_SERVICE: Final = ("not_found", "id_reused", "not_refundable")
_FOUND: Final = ("not_found",)


#: A line of a refund or a dispute: its amount and how it splits between model and platform.
_SPLIT_LINE: Final = answer_object(
    {
        "line_id": TEXT,
        "room": TEXT,
        "amount_minor": MINOR,
        "model_minor": MINOR,
        "platform_minor": MINOR,
    }
)
#: A refund as the API answers it (settlement.refunds.service.refund_json).
REFUND: Final = answer_object(
    {
        "refund_id": ID,
        "customer": ID,
        "tab_id": ID,
        "processor": TEXT,
        "capture_id": TEXT,
        "currency": TEXT,
        "amount_minor": MINOR,
        "reason": TEXT,
        "status": {
            "enum": ["pending", "succeeded", "failed", "refused", "awaiting_consent", "declined"]
        },
        "decision": answer_object(
            {
                "verdict": TEXT,
                "amount_minor": MINOR,
                "policy_max_minor": MINOR,
                "reason": TEXT,
                "lines": array_of(answer_object({"line_id": TEXT, "amount_minor": MINOR})),
            }
        ),
        "decided_by": TEXT,
        "decided_at": or_null(INSTANT),
        "processor_refund_id": or_null(TEXT),
        "failure": or_null(TEXT),
        "requested_at": INSTANT,
        "finished_at": or_null(INSTANT),
        "lines": array_of(_SPLIT_LINE),
        "origin": TEXT,
        "note": TEXT,
        "escalated_at": or_null(INSTANT),
        "consents": array_of(
            answer_object(
                {
                    "room": TEXT,
                    "answer": or_null(TEXT),
                    "answered_by": or_null(TEXT),
                    "answered_at": or_null(INSTANT),
                }
            )
        ),
        "captures": array_of(
            answer_object(
                {
                    "auth_ref": TEXT,
                    "capture_id": or_null(TEXT),
                    "amount_minor": MINOR,
                    "processor_refund_id": or_null(TEXT),
                }
            )
        ),
    }
)
#: A dispute as the API answers it (settlement.refunds.service.dispute_json).
DISPUTE: Final = answer_object(
    {
        "dispute_id": TEXT,
        "processor": TEXT,
        "customer": ID,
        "tab_id": ID,
        "capture_id": TEXT,
        "currency": TEXT,
        "amount_minor": MINOR,
        "fee_minor": MINOR,
        "reason": TEXT,
        "status": {"enum": ["open", "won", "lost"]},
        "opened_at": INSTANT,
        "closed_at": or_null(INSTANT),
        "lines": array_of(_SPLIT_LINE),
    }
)


def _answers(
    description: str, *, created: str = "", schema: dict[str, Any] = OBJECT
) -> dict[str, Any]:
    """A 200 JSON answer of ``schema`` (a bare object: its fields are in docs/refunds.md); with
    ``created``, a 201 first."""
    out = {"201": answer(schema, created)} if created else {}
    return {**out, "200": answer(schema, description)}


def paths(bounds: Bounds) -> dict[str, Any]:
    """The refunds routes' OpenAPI path items, with this server's ``bounds``."""
    dispute = (DISPUTE_ID,)
    return {
        "/v1/refunds": {
            "post": operation(
                "Refund a settled tab, chosen lines or an amount, by the site's policy; "
                "idempotent by refund_id.",
                bounds,
                body=REFUND_BODY,
                answers=_answers(
                    "The same refund_id asked before: its refund.",
                    created="The refund, with the policy's decision and its status.",
                    schema=REFUND,
                ),
                refusals=("support_key_required", *_SERVICE),
            )
        },
        "/v1/refunds/{refund_id}": {
            "get": operation(
                "A refund.",
                bounds,
                path=(REFUND_ID,),
                answers=_answers("The refund.", schema=REFUND),
                refusals=_FOUND,
            )
        },
        "/v1/refunds/{refund_id}/consent": {
            "post": operation(
                "The model's answer to a refund awaiting her consent (with the support key, "
                "support answers, also an escalated request).",
                bounds,
                path=(REFUND_ID,),
                body=CONSENT_BODY,
                answers=_answers("The refund.", schema=REFUND),
                refusals=_SERVICE,
            )
        },
        "/v1/disputes/notices/{processor}": {
            "post": {
                **operation(
                    "A processor's signed dispute notice (idempotent by dispute id), in the "
                    f"processor's own shape, at most {NOTICE_BYTES_MAX} bytes.",
                    bounds,
                    path=(NOTICE_PROCESSOR,),
                    answers=_answers(
                        "The dispute, known before.", created="The dispute.", schema=DISPUTE
                    ),
                    refusals=("body_too_large", "invalid_signature", "malformed_notice", *_SERVICE),
                    public=True,
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": OBJECT}},
                },
            }
        },
        "/v1/sandbox/disputes": {
            "post": operation(
                "The sandbox raises (or closes) a dispute of a capture; the notice is signed "
                "and read as a processor's.",
                bounds,
                body=SANDBOX_DISPUTE_BODY,
                answers=_answers(
                    "The dispute, known before.", created="The dispute.", schema=DISPUTE
                ),
                refusals=_SERVICE,
            )
        },
        "/v1/disputes/ratio": {
            "get": operation(
                "Disputes over captured settlements per processor in a month.",
                bounds,
                query=(MONTH,),
                answers=_answers("The ratios, with the alert level."),
            )
        },
        "/v1/disputes/{dispute_id}": {
            "get": operation(
                "A dispute.",
                bounds,
                path=dispute,
                answers=_answers("The dispute.", schema=DISPUTE),
                refusals=_FOUND,
            )
        },
        "/v1/disputes/{dispute_id}/evidence": {
            "get": operation(
                "The dispute's evidence package, from the ledger.",
                bounds,
                path=dispute,
                answers=_answers("The package."),
                refusals=_FOUND,
            )
        },
        "/v1/disputes/{dispute_id}/evidence.html": {
            "get": operation(
                "The evidence package as a printable page.",
                bounds,
                path=dispute,
                answers={"200": {"description": "HTML.", "content": {"text/html": {}}}},
                refusals=_FOUND,
            )
        },
        "/v1/customers/{customer}/flag": {
            "get": operation(
                "The customer's standing dispute flag.",
                bounds,
                path=(CUSTOMER,),
                answers=_answers("The flag."),
                refusals=_FOUND,
            ),
            "delete": operation(
                "Support clears the flag (support key; `by` is the agent).",
                bounds,
                path=(CUSTOMER,),
                required_query=(BY,),
                answers=_answers("Cleared."),
                refusals=("support_key_required", *_FOUND),
            ),
        },
        "/v1/payments/{number}": {
            "get": operation(
                "A tab and its whole history, by any number: capture id, processor "
                "transaction id, authorization, refund id, dispute id, tab id, tip id.",
                bounds,
                path=(NUMBER,),
                answers=_answers("The payment's history."),
                refusals=_FOUND,
            )
        },
        **_customer_paths(bounds),
    }


def _customer_paths(bounds: Bounds) -> dict[str, Any]:
    """Customers' own refund requests (``server.refund_requests_api``)."""
    tab = (CUSTOMER, TAB_ID)
    return {
        "/v1/customers/{customer}/tabs/{tab_id}/refund-requests": {
            "post": operation(
                "A customer's own refund request from her statement (reason, lines, "
                "PNG/JPEG/PDF attachments checked by content), decided by the site's policy; "
                f"idempotent by refund_id. Bodies are at most {REQUEST_BYTES_MAX} bytes.",
                bounds,
                path=tab,
                body=REFUND_REQUEST_BODY,
                answers=_answers(
                    "The same request again.",
                    created="The request as the customer's statement shows it.",
                ),
                refusals=("attachment_refused", *_SERVICE),
            )
        },
        "/v1/customers/{customer}/tabs/{tab_id}/refunds": {
            "get": operation(
                "What the customer's statement shows of refunds: each line with what may "
                "still be asked back, every refund and request with its state.",
                bounds,
                path=tab,
                answers=_answers("The tab's refunds."),
                refusals=_FOUND,
            )
        },
        "/v1/refunds/{refund_id}/attachments/{n}": {
            "get": operation(
                "A request's attachment, for support staff only (support key), as a download "
                "(`application/octet-stream`, `Content-Disposition: attachment`).",
                bounds,
                path=(REFUND_ID, ATTACHMENT_N),
                answers={
                    "200": {
                        "description": "The file's bytes.",
                        "content": {"application/octet-stream": {}},
                    }
                },
                refusals=("support_key_required", *_FOUND),
            )
        },
    }
