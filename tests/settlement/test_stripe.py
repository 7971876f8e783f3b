"""The Stripe adapter's requests, checked against the documented shapes of the Stripe API.

There is no network here: the official SDK is given a recording HTTP client that answers with
responses in the documented shapes (PaymentIntent, Refund, search result, card error), and the
test checks each request the SDK built — method, path, form parameters, idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest

from settlement.gateway import DeclineReason, GatewayRequestError, GatewayUnavailable, Outcome
from settlement.processors.stripe import CAPTURE_KEY_METADATA, StripeGateway, decline_reason
from tests.settlement.processors.recording import Recording
from tests.settlement.receiver import receiving

CAPTURE_BEFORE_S = 1_700_600_000


def _intent(status: str, amount: int = 5_000, received: int = 0, **extra: Any) -> dict[str, Any]:
    """A PaymentIntent as the API documents it (the fields the adapter reads, and a few more)."""
    return {
        "id": "pi_3Nx",
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": amount if status == "requires_capture" else 0,
        "amount_received": received,
        "capture_method": "manual",
        "currency": "usd",
        "status": status,
        "livemode": False,
        "metadata": {},
        "latest_charge": {
            "id": "ch_3Nx",
            "object": "charge",
            "amount": amount,
            "captured": status == "succeeded",
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": "visa",
                    "capture_before": CAPTURE_BEFORE_S,
                    "incremental_authorization": {"status": "available"},
                },
            },
        },
        **extra,
    }


Responder = Callable[[str, str, dict[str, list[str]]], tuple[int, dict[str, Any]]]


def _gateway(respond: Responder) -> tuple[StripeGateway, Recording]:
    client = Recording(respond)
    return StripeGateway("sk_test_123", http_client=client), client


async def test_authorize_creates_a_manual_capture_intent() -> None:
    gateway, client = _gateway(lambda m, p, q: (200, _intent("requires_capture")))
    hold = await gateway.authorize(
        idempotency_key="auth:c1", payment_method="pm_card_visa", amount_minor=5_000, currency="USD"
    )
    assert (hold.outcome, hold.auth_ref, hold.amount_minor, hold.currency) == (
        Outcome.APPROVED,
        "pi_3Nx",
        5_000,
        "USD",
    )
    assert hold.expires_at_ms == CAPTURE_BEFORE_S * 1_000
    method, path, params, headers = client.requests[0]
    assert (method, path) == ("post", "/v1/payment_intents")
    assert params["amount"] == ["5000"]
    assert params["currency"] == ["usd"]
    assert params["capture_method"] == ["manual"]
    assert params["confirm"] == ["true"]
    assert params["payment_method"] == ["pm_card_visa"]
    assert params["payment_method_options[card][request_incremental_authorization]"] == [
        "if_available"
    ]
    assert headers["Idempotency-Key"] == "auth:c1"
    assert headers["Authorization"] == "Bearer sk_test_123"


async def test_increment_capture_void_refund_lookup() -> None:
    def respond(method: str, path: str, params: dict[str, list[str]]) -> tuple[int, Any]:
        if path.endswith("/increment_authorization"):
            return 200, _intent("requires_capture", amount=int(params["amount"][0]))
        if path.endswith("/capture"):
            return 200, _intent("succeeded", received=int(params["amount_to_capture"][0]))
        if path.endswith("/cancel"):
            return 200, _intent("canceled")
        if path == "/v1/refunds":
            return 200, {
                "id": "re_1",
                "object": "refund",
                "amount": int(params["amount"][0]),
                "payment_intent": "pi_3Nx",
                "status": "succeeded",
                "charge": {"id": "ch_3Nx", "object": "charge", "amount_refunded": 700},
            }
        if path == "/v1/payment_intents/search":
            return 200, {
                "object": "search_result",
                "data": [_intent("succeeded", received=1_234)],
                "has_more": False,
                "next_page": None,
                "url": "/v1/payment_intents/search",
            }
        raise AssertionError(path)

    gateway, client = _gateway(respond)
    raised = await gateway.increment(idempotency_key="inc:1", auth_ref="pi_3Nx", amount_minor=8_000)
    assert (raised.approved, raised.amount_minor) == (True, 8_000)
    capture = await gateway.capture(
        idempotency_key="capture:c1/tab_1", auth_ref="pi_3Nx", amount_minor=1_234
    )
    assert (capture.capture_id, capture.amount_minor, capture.released_minor) == (
        "pi_3Nx",
        1_234,
        5_000 - 1_234,
    )
    voided = await gateway.void(idempotency_key="void:c1/tab_2", auth_ref="pi_3Nx")
    assert voided.released_minor == 5_000
    refund = await gateway.refund(idempotency_key="refund:1", capture_id="pi_3Nx", amount_minor=700)
    assert (refund.refund_id, refund.refunded_total_minor) == ("re_1", 700)
    found = await gateway.lookup("capture:c1/tab_1")
    assert found == capture

    calls = [(m, p) for m, p, _, _ in client.requests]
    assert calls == [
        ("post", "/v1/payment_intents/pi_3Nx/increment_authorization"),
        ("post", "/v1/payment_intents/pi_3Nx/capture"),
        ("post", "/v1/payment_intents/pi_3Nx/cancel"),
        ("post", "/v1/refunds"),
        ("get", "/v1/payment_intents/search"),
    ]
    increment, capture_req, cancel, refund_req, search = client.requests
    assert cancel[2]["cancellation_reason"] == ["abandoned"]
    assert increment[2]["amount"] == ["8000"]
    assert capture_req[2]["amount_to_capture"] == ["1234"]
    assert capture_req[2][f"metadata[{CAPTURE_KEY_METADATA}]"] == ["capture:c1/tab_1"]
    assert refund_req[2]["payment_intent"] == ["pi_3Nx"]
    assert refund_req[2]["amount"] == ["700"]
    assert search[2]["query"] == [f"metadata['{CAPTURE_KEY_METADATA}']:'capture:c1/tab_1'"]
    # Every state-changing call carries the caller's key, never one the SDK made up.
    assert [r[3].get("Idempotency-Key") for r in client.requests[:4]] == [
        "inc:1",
        "capture:c1/tab_1",
        "void:c1/tab_2",
        "refund:1",
    ]


async def test_a_card_decline_is_an_outcome_with_its_reason() -> None:
    declined = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "stolen_card",
            "message": "Your card was declined.",
        }
    }
    gateway, _ = _gateway(lambda m, p, q: (402, declined))
    capture = await gateway.capture(idempotency_key="k", auth_ref="pi_3Nx", amount_minor=10)
    assert (capture.outcome, capture.decline_reason) == (
        Outcome.DECLINED,
        DeclineReason.STOLEN_CARD,
    )
    hold = await gateway.authorize(
        idempotency_key="a", payment_method="pm_x", amount_minor=100, currency="EUR"
    )
    assert hold.decline_reason is DeclineReason.STOLEN_CARD
    # A code nobody classified is never retried (it used to become a retryable do_not_honor).
    assert decline_reason("something_new") is DeclineReason.UNRECOGNIZED
    assert not decline_reason("something_new").retryable


@pytest.mark.parametrize(
    ("status", "error_type", "raised"),
    [
        (500, "api_error", GatewayUnavailable),
        (429, "invalid_request_error", GatewayUnavailable),
        (400, "invalid_request_error", GatewayRequestError),
        (409, "invalid_request_error", GatewayUnavailable),
        (400, "idempotency_error", GatewayRequestError),
    ],
)
async def test_api_errors_map_to_the_protocol(
    status: int, error_type: str, raised: type[Exception]
) -> None:
    body = {"error": {"type": error_type, "message": "no"}}
    gateway, _ = _gateway(lambda m, p, q: (status, body))
    with pytest.raises(raised):
        await gateway.capture(idempotency_key="k", auth_ref="pi_3Nx", amount_minor=10)


async def test_the_sdk_requests_travel_over_the_settlement_http_client() -> None:
    """Without a recording client: the adapter's own HTTP client sends the SDK's request."""
    async with receiving([503]) as receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        gateway = StripeGateway("sk_test_123", timeout_s=2, base_url=base)
        with pytest.raises(GatewayUnavailable):
            await gateway.capture(idempotency_key="capture:x", auth_ref="pi_1", amount_minor=5)
    request = receiver.received[0]
    assert request.path == "/v1/payment_intents/pi_1/capture"
    assert request.headers["idempotency-key"] == "capture:x"
    assert parse_qs(request.body.decode())["amount_to_capture"] == ["5"]
