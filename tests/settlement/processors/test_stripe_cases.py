"""The Stripe adapter against what real Stripe traffic brings, one test per case of issue 13.

No network: the official SDK is given a recording HTTP client that answers in the documented
shapes of the Stripe API (PaymentIntent, card error, search result), scripted per request, and
the test checks both the outcome and the requests the adapter sent. Where the adapter's own HTTP
client matters (the base URL from the settings), a loopback receiver stands in for Stripe.
"""

from __future__ import annotations

from typing import Any

import pytest

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from server.config import Settings
from settlement import scripts
from settlement.gateway import (
    AuthorizationStatus,
    DeclineReason,
    GatewayCredentialsRejected,
    GatewayRequestError,
    GatewayUnavailable,
    Outcome,
)
from settlement.ledger.ledger import Ledger
from settlement.processors.stripe import (
    AUTH_KEY_METADATA,
    HOLD_TTL_MS_DEFAULT,
    RECONCILE_SUFFIX,
    StripeGateway,
)
from settlement.queue import request_settlement
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, past_claim_bound
from tests.settlement.processors.recording import Recording, Reply, Script
from tests.settlement.receiver import receiving

CAPTURE_BEFORE_S = 1_700_600_000
CREATED_S = 1_700_000_000


def intent(status: str, amount: int = 5_000, **extra: Any) -> dict[str, Any]:
    """A PaymentIntent in the documented shape (the fields the adapter reads, and a few more)."""
    capturable = amount if status == "requires_capture" else 0
    body: dict[str, Any] = {
        "id": "pi_3Nx",
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": capturable,
        "amount_received": amount if status == "succeeded" else 0,
        "capture_method": "manual",
        "client_secret": "pi_3Nx_secret_abc",
        "created": CREATED_S,
        "currency": "usd",
        "status": status,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "last_payment_error": None,
        "latest_charge": {
            "id": "ch_3Nx",
            "object": "charge",
            "created": CREATED_S,
            "payment_method_details": {
                "type": "card",
                "card": {"brand": "visa", "capture_before": CAPTURE_BEFORE_S},
            },
        },
    }
    body.update(extra)
    return body


def card_error(decline_code: str, intent_id: str = "pi_declined") -> dict[str, Any]:
    """A ``card_error`` as Stripe answers a declined confirmation (402)."""
    return {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline_code,
            "message": "Your card was declined.",
            "payment_intent": intent("requires_payment_method", id=intent_id),
        }
    }


def gateway(script: Script, clock: FakeClock | None = None) -> tuple[StripeGateway, Recording]:
    client = Recording(script)
    return StripeGateway("sk_test_123", http_client=client, clock=clock), client


def sequence(*replies: Reply) -> Script:
    """Answer each request with the next reply."""
    queue = list(replies)
    return lambda m, p, q: queue.pop(0)


async def _authorize(gw: StripeGateway, key: str = "auth:tab_1") -> Any:
    return await gw.authorize(
        idempotency_key=key, payment_method="pm_card_visa", amount_minor=5_000, currency="USD"
    )


async def test_the_hold_asks_for_no_return_url() -> None:
    gw, client = gateway(lambda m, p, q: (200, intent("requires_capture")))
    hold = await _authorize(gw)
    assert hold.approved
    params = client.requests[0][2]
    assert params["automatic_payment_methods[enabled]"] == ["true"]
    assert params["automatic_payment_methods[allow_redirects]"] == ["never"]
    assert params[f"metadata[{AUTH_KEY_METADATA}]"] == ["auth:tab_1"]
    assert (hold.processor_ref, hold.expires_at_ms) == ("ch_3Nx", CAPTURE_BEFORE_S * 1_000)


async def test_requires_action_is_a_customer_action_and_the_intent_stays_open() -> None:
    challenge = intent(
        "requires_action",
        next_action={"type": "redirect_to_url", "redirect_to_url": {"url": "https://acs/3ds"}},
    )
    gw, client = gateway(sequence((200, challenge), (200, challenge)))
    hold = await _authorize(gw)
    assert hold.outcome is Outcome.ACTION_REQUIRED
    assert hold.action is not None
    assert (hold.action.kind, hold.action.client_secret, hold.action.redirect_url) == (
        "redirect_to_url",
        "pi_3Nx_secret_abc",
        "https://acs/3ds",
    )
    assert not any(p.endswith("/cancel") for _, p in client.calls())

    # The customer completed it; Stripe replays its saved answer to the key, the intent tells.
    gw, client = gateway(sequence((200, challenge), (200, intent("requires_capture"))))
    hold = await _authorize(gw)
    assert (hold.outcome, hold.auth_ref, hold.amount_minor) == (Outcome.APPROVED, "pi_3Nx", 5_000)
    assert client.calls()[1] == ("get", "/v1/payment_intents/pi_3Nx")


async def test_an_intent_left_unusable_is_a_decline_and_is_cancelled() -> None:
    failed = intent(
        "requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "generic_decline"},
    )
    gw, client = gateway(sequence((200, failed), (200, intent("canceled"))))
    hold = await _authorize(gw)
    assert (hold.outcome, hold.decline_reason, hold.auth_ref) == (
        Outcome.DECLINED,
        DeclineReason.DO_NOT_HONOR,
        "pi_3Nx",
    )
    assert client.calls()[1] == ("post", "/v1/payment_intents/pi_3Nx/cancel")


async def test_a_reply_missing_a_field_is_read_again_from_the_intent() -> None:
    broken = intent("succeeded")
    del broken["amount_received"]
    gw, client = gateway(sequence((200, broken), (200, intent("succeeded", amount=5_000))))
    capture = await gw.capture(idempotency_key="capture:c/t", auth_ref="pi_3Nx", amount_minor=5_000)
    assert (capture.approved, capture.amount_minor) == (True, 5_000)
    assert client.calls()[1] == ("get", "/v1/payment_intents/pi_3Nx")

    gw, _ = gateway(lambda m, p, q: (200, broken))
    with pytest.raises(GatewayUnavailable, match="malformed"):
        await gw.capture(idempotency_key="capture:c/t", auth_ref="pi_3Nx", amount_minor=5_000)
    gw, _ = gateway(lambda m, p, q: (200, {"object": "payment_intent"}))
    with pytest.raises(GatewayUnavailable):
        await _authorize(gw)


async def test_a_committed_capture_with_a_malformed_reply_never_dead_letters_the_tab(
    meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    broken = intent("succeeded")
    del broken["amount_received"]
    gw, _ = gateway(lambda m, p, q: (200, broken))
    await _settling_tab(meter, clock, "c1")
    report = await make_worker(meter, gw, ledger).run_burst(sweep=False)
    assert report.statuses == {"retry_later": 1}
    assert (report.left_pending, report.dead_lettered) == (1, 0)


async def test_a_missing_capture_before_expires_seven_days_after_creation() -> None:
    held = intent("requires_capture")
    del held["latest_charge"]["payment_method_details"]["card"]["capture_before"]
    gw, _ = gateway(lambda m, p, q: (200, held))
    hold = await _authorize(gw)
    assert hold.expires_at_ms == CREATED_S * 1_000 + HOLD_TTL_MS_DEFAULT


async def test_a_saved_500_is_reconciled_through_the_intent_not_retried_blindly() -> None:
    error = {"error": {"type": "api_error", "message": "saved"}}
    # Committed before the 500: the intent says captured; nothing is sent again.
    gw, client = gateway(sequence((500, error), (200, intent("succeeded", amount=5_000))))
    capture = await gw.capture(idempotency_key="capture:c/t", auth_ref="pi_3Nx", amount_minor=5_000)
    assert capture.approved
    assert client.calls() == [
        ("post", "/v1/payment_intents/pi_3Nx/capture"),
        ("get", "/v1/payment_intents/pi_3Nx"),
    ]
    # Not committed: resent once under a key of its own (the first would replay the 500).
    gw, client = gateway(
        sequence((500, error), (200, intent("requires_capture")), (200, intent("succeeded")))
    )
    capture = await gw.capture(idempotency_key="capture:c/t", auth_ref="pi_3Nx", amount_minor=5_000)
    assert capture.approved
    assert client.requests[2][3]["Idempotency-Key"] == "capture:c/t" + RECONCILE_SUFFIX


async def test_a_pruned_key_meets_an_already_captured_intent_and_finds_the_capture() -> None:
    state = {
        "error": {
            "type": "invalid_request_error",
            "code": "payment_intent_unexpected_state",
            "message": "This PaymentIntent could not be captured because it has a status of "
            "succeeded.",
        }
    }
    gw, _ = gateway(sequence((400, state), (200, intent("succeeded", amount=5_000))))
    capture = await gw.capture(idempotency_key="capture:c/t", auth_ref="pi_3Nx", amount_minor=5_000)
    assert (capture.approved, capture.capture_id) == (True, "pi_3Nx")


async def test_lookup_by_authorization_reads_the_intent_not_the_search_index() -> None:
    gw, client = gateway(lambda m, p, q: (200, intent("succeeded", amount=5_000)))
    found = await gw.lookup_authorization("pi_3Nx")
    assert found is not None
    assert (found.status, found.captured_minor, found.capture_id) == (
        AuthorizationStatus.CAPTURED,
        5_000,
        "pi_3Nx",
    )
    assert client.calls() == [("get", "/v1/payment_intents/pi_3Nx")]
    missing = {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
    gw, _ = gateway(lambda m, p, q: (404, missing))
    assert await gw.lookup_authorization("pi_nope") is None


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("pickup_card", DeclineReason.PICKUP_CARD),
        ("fraudulent", DeclineReason.FRAUDULENT),
        ("do_not_try_again", DeclineReason.DO_NOT_TRY_AGAIN),
        ("revocation_of_authorization", DeclineReason.REVOCATION_OF_AUTHORIZATION),
        ("stop_payment_order", DeclineReason.STOP_PAYMENT_ORDER),
        ("restricted_card", DeclineReason.RESTRICTED_CARD),
        ("security_violation", DeclineReason.SECURITY_VIOLATION),
        ("a_code_from_2030", DeclineReason.UNRECOGNIZED),
    ],
)
async def test_hard_and_unknown_declines_are_never_retried_and_keep_the_intent(
    code: str, reason: DeclineReason
) -> None:
    gw, client = gateway(sequence((402, card_error(code)), (200, intent("canceled"))))
    hold = await _authorize(gw)
    assert (hold.decline_reason, hold.decline_code) == (reason, code)
    assert not reason.retryable
    assert (hold.auth_ref, hold.processor_ref) == ("pi_declined", "pi_declined")
    assert client.calls()[1] == ("post", "/v1/payment_intents/pi_declined/cancel")


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_key_pauses_settlement_instead_of_failing_it(status: int) -> None:
    body = {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
    gw, _ = gateway(lambda m, p, q: (status, body))
    with pytest.raises(GatewayCredentialsRejected):
        await gw.capture(idempotency_key="k", auth_ref="pi_3Nx", amount_minor=10)
    assert issubclass(GatewayCredentialsRejected, GatewayUnavailable)


async def test_stripe_should_retry_is_honoured() -> None:
    lock = {"error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "x"}}
    gw, _ = gateway(lambda m, p, q: (400, lock, {"Stripe-Should-Retry": "true"}))
    with pytest.raises(GatewayUnavailable):
        await gw.increment(idempotency_key="k", auth_ref="pi_3Nx", amount_minor=9_000)
    conflict = {"error": {"type": "invalid_request_error", "message": "conflict"}}
    gw, _ = gateway(lambda m, p, q: (409, conflict, {"Stripe-Should-Retry": "false"}))
    with pytest.raises(GatewayRequestError):
        await gw.increment(idempotency_key="k", auth_ref="pi_3Nx", amount_minor=9_000)


async def test_a_partial_authorization_holds_what_was_authorized() -> None:
    partial = intent("requires_capture", amount=5_000, amount_capturable=3_000)
    gw, _ = gateway(lambda m, p, q: (200, partial))
    hold = await _authorize(gw)
    assert (hold.approved, hold.amount_minor) == (True, 3_000)


async def test_the_base_url_comes_from_the_settings() -> None:
    async with receiving([503]) as receiver:
        settings = Settings.from_env(
            {
                "TIPMETER_PROCESSORS": "s",
                "TIPMETER_PROCESSOR_S_KIND": "stripe",
                "TIPMETER_PROCESSOR_S_API_KEY": "sk_test_1",
                "TIPMETER_PROCESSOR_S_URL": f"http://127.0.0.1:{receiver.port}",
                "TIPMETER_PROCESSOR_S_TIMEOUT_MS": "2000",
            }
        )
        gw = settings.processor_registry(FakeClock()).for_processor("s")
        with pytest.raises(GatewayUnavailable):
            await gw.void(idempotency_key="void:x", auth_ref="pi_1")
    assert receiver.received[0].path == "/v1/payment_intents/pi_1/cancel"
    assert receiver.received[0].headers["authorization"] == "Bearer sk_test_1"


async def _settling_tab(meter: Meter, clock: FakeClock, customer: str) -> TabRef:
    """A tab held by the intent ``pi_3Nx``, with 500 spent, frozen for settlement."""
    opened = await meter.tabs.open(
        customer=customer,
        currency="USD",
        cap_minor=5_000,
        auth_ref="pi_3Nx",
        capture_before_ms=clock.now_ms() + 86_400_000,
    )
    assert opened.code is Code.APPLIED
    ref = TabRef(customer, opened.tab_id)
    assert (await meter.tip(ref, tip("t1", 500))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    return ref


@pytest.mark.parametrize(("advice", "retryable"), [("", True), ("03", False), ("21", False)])
async def test_a_mastercard_advice_code_decides_whether_a_declined_capture_is_retried(
    meter: Meter, clock: FakeClock, advice: str, retryable: bool, ledger: Ledger
) -> None:
    declined = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "do_not_honor",
            "network_advice_code": advice or None,
            "message": "Your card was declined.",
        }
    }
    gw, _ = gateway(lambda m, p, q: (402, declined))
    ref = await _settling_tab(meter, clock, "c-mac")
    assert (await make_worker(meter, gw, ledger).run_burst(sweep=False)).statuses == {"failed": 1}
    found = await scripts.read_settlement(meter.store, ref)
    assert found is not None
    assert (found[1].decline_reason, found[1].retryable) == ("do_not_honor", retryable)


async def test_a_revoked_key_never_dead_letters_a_queued_tab(
    meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    revoked = {"error": {"type": "invalid_request_error", "message": "Expired API Key provided"}}
    gw, _ = gateway(lambda m, p, q: (401, revoked))
    await _settling_tab(meter, clock, "c-401")
    worker = make_worker(meter, gw, ledger)  # deliveries_max is 3
    for _ in range(5):
        report = await worker.run_burst(sweep=False)
        assert report.statuses == {"retry_later": 1}
        assert report.dead_lettered == 0
        await past_claim_bound(meter)  # past the claim bound: the next burst takes it again


async def test_an_authorization_answered_500_is_found_by_its_key_in_the_metadata() -> None:
    error = {"error": {"type": "api_error", "message": "saved"}}
    found = {"object": "search_result", "data": [intent("requires_capture")], "has_more": False}
    gw, client = gateway(sequence((500, error), (200, found)))
    hold = await _authorize(gw)
    assert (hold.approved, hold.auth_ref) == (True, "pi_3Nx")
    method, path, params, _ = client.requests[1]
    assert (method, path) == ("get", "/v1/payment_intents/search")
    assert params["query"] == [f"metadata['{AUTH_KEY_METADATA}']:'auth:tab_1'"]
    # Not (yet) in the index: unavailable, the caller retries the same request.
    empty = {"object": "search_result", "data": [], "has_more": False}
    gw, _ = gateway(sequence((500, error), (200, empty)))
    with pytest.raises(GatewayUnavailable):
        await _authorize(gw)
