"""Pay links through processors' hosted payment pages: Stripe Checkout (the official SDK over
the recording client, answering in the documented shapes) and Segpay's payment page (the Segpay
test process, which serves the page, decides, posts nothing here, and sends the customer back).

Each asserts what the processor was asked, that the return is confirmed with the processor
(never read from the URL), and that the case ends with exactly one charge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metering.clock import FakeClock
from settlement.collection import batch
from settlement.collection.collector import (
    ChargeCode,
    CollectionConfig,
    Collector,
    hosted_key,
    parse_hosted_key,
)
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.processors.segpay import SegpayGateway
from settlement.processors.stripe import HOSTED_KEY_METADATA, StripeGateway
from tests.settlement.processors.conftest import (
    ETICKET_ID,
    SegpayProcess,
    running_segpay,
)
from tests.settlement.processors.recording import Recording, Reply

CONFIG = CollectionConfig(link_secret="link-secret")
RETURN_URL = "https://cams.example/pay/T/return"
CSV = b"customer,amount_minor,currency,phone,email,language\nalice,1250,USD,+37060012345,,en\n"


@pytest.fixture
def segpay(tmp_path: Path) -> Iterator[SegpayProcess]:
    """The Segpay test process of this test."""
    yield from running_segpay(tmp_path)


async def _uploaded_case(collector: Collector, processor: str, now_ms: int) -> tuple[str, str]:
    [row], _ = batch.parse(CSV, "text/csv")
    case_id, token = await collector.open_uploaded("b1", row, processor, now_ms)
    assert token is not None
    return case_id, token


async def _attempts(ledger: Ledger, case_id: str) -> list[tuple[int, str, str]]:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT attempt_no, status, payment_method FROM collection_attempts "
            "WHERE case_id = %s ORDER BY attempt_no",
            (case_id,),
        )
        return [
            (r["attempt_no"], r["status"], r["payment_method"]) for r in await cursor.fetchall()
        ]


class CheckoutScript:
    """Stripe's answers about one Checkout Session: open until the customer pays."""

    def __init__(self) -> None:
        self.paid = False
        self.key = ""

    def session(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "cs_test_a1",
            "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_a1",
            "amount_total": 1250,
            "currency": "usd",
            "mode": "payment",
            "status": "complete" if self.paid else "open",
            "payment_status": "paid" if self.paid else "unpaid",
            "metadata": {HOSTED_KEY_METADATA: self.key},
            "payment_intent": None,
        }
        if self.paid:
            body["payment_intent"] = {
                "id": "pi_hosted_1",
                "object": "payment_intent",
                "amount": 1250,
                "amount_received": 1250,
                "status": "succeeded",
            }
        return body

    def __call__(self, method: str, path: str, params: dict[str, list[str]]) -> Reply:
        if method == "post" and path == "/v1/checkout/sessions":
            self.key = params["metadata[tipmeter_hosted_key]"][0]
            return 200, self.session()
        if method == "get" and path == "/v1/checkout/sessions/cs_test_a1":
            return 200, self.session()
        return 404, {"error": {"type": "invalid_request_error", "message": path}}


async def test_a_link_is_paid_on_stripe_checkout_and_confirmed_with_stripe(
    ledger: Ledger, clock: FakeClock
) -> None:
    script = CheckoutScript()
    recording = Recording(script)
    stripe = StripeGateway("sk_test_x", http_client=recording, clock=clock)
    collector = Collector(ledger, ProcessorRegistry.single(stripe, name="stripe"), CONFIG)
    case_id, token = await _uploaded_case(collector, "stripe", clock.now_ms())

    refused, started = await collector.start_hosted(token, RETURN_URL, clock.now_ms())
    assert refused is None
    assert started is not None
    assert started.redirect_url == "https://checkout.stripe.com/c/pay/cs_test_a1"
    _, _, params, headers = recording.requests[0]
    assert headers["Idempotency-Key"] == hosted_key(case_id, 1) == script.key
    assert params["line_items[0][price_data][unit_amount]"] == ["1250"]
    assert params["line_items[0][price_data][currency]"] == ["usd"]
    assert params["success_url"] == [f"{RETURN_URL}?session_id={{CHECKOUT_SESSION_ID}}"]
    assert params["cancel_url"] == [RETURN_URL]
    # The customer opens the card form again: the same page (same key), the same attempt.
    _, again = await collector.start_hosted(token, RETURN_URL, clock.now_ms())
    assert again == started
    assert recording.requests[1][3]["Idempotency-Key"] == hosted_key(case_id, 1)
    assert await _attempts(ledger, case_id) == [(1, "pending", "hosted:cs_test_a1")]
    # While the customer is on Stripe's page no retry or other payment may start.
    assert (await collector.pay_link(token, "tok_visa", clock.now_ms())).code is ChargeCode.BUSY

    # Back without paying: Stripe says the session is open; nothing is recorded.
    assert (await collector.complete_hosted(case_id, 1, clock.now_ms())).code is ChargeCode.BUSY
    script.paid = True
    paid = await collector.complete_hosted(case_id, 1, clock.now_ms())
    assert (paid.code, paid.capture_id) == (ChargeCode.PAID, "pi_hosted_1")
    # The webhook's and the return's confirmations meet: the same answer, recorded once.
    assert (await collector.complete_hosted(case_id, 1, clock.now_ms())).code is ChargeCode.PAID
    case = await collector.case(case_id)
    assert case is not None
    assert (case["state"], case["capture_id"]) == ("paid", "pi_hosted_1")
    assert await _attempts(ledger, case_id) == [(1, "approved", "hosted:cs_test_a1")]
    clearing = journal.processor_clearing("stripe", "USD")
    assert await ledger.account_balance(clearing) == 1250
    assert [c for c in recording.calls() if c[0] == "post"] == [
        ("post", "/v1/checkout/sessions"),
        ("post", "/v1/checkout/sessions"),
    ]


async def test_a_link_is_paid_on_segpays_page_after_a_decline(
    ledger: Ledger, clock: FakeClock, segpay: SegpayProcess, tmp_path: Path
) -> None:
    gateway = SegpayGateway(segpay.url, eticket_id=ETICKET_ID, clock=clock)
    collector = Collector(ledger, ProcessorRegistry.single(gateway, name="segpay"), CONFIG)
    case_id, token = await _uploaded_case(collector, "segpay", clock.now_ms())

    async with httpx.AsyncClient(timeout=10) as browser:
        _, started = await collector.start_hosted(token, RETURN_URL, clock.now_ms())
        assert started is not None
        assert started.redirect_url.startswith(f"{segpay.url}/billing/poset.cgi?")
        page = await browser.get(started.redirect_url)
        assert page.status_code == 200
        assert 'name="purchaseid"' in page.text
        # A card declined for insufficient funds (the test process's ISO code 51).
        back = await browser.post(started.redirect_url, data={"purchaseid": "1001x51"})
        assert back.status_code == 303
        assert back.headers["location"].startswith(f"{RETURN_URL}?transactionid=")
        declined = await collector.complete_hosted(case_id, 1, clock.now_ms())
        assert (declined.code, declined.decline_reason) == (
            ChargeCode.DECLINED,
            "insufficient_funds",
        )
        assert declined.reason_words == "insufficient_funds"

        # Another card on a new page (attempt 2, its own reference).
        _, second = await collector.start_hosted(token, RETURN_URL, clock.now_ms())
        assert second is not None
        assert second.redirect_url != started.redirect_url
        back = await browser.post(second.redirect_url, data={"purchaseid": "4242"})
        assert back.status_code == 303
        paid = await collector.complete_hosted(case_id, 2, clock.now_ms())
        assert paid.code is ChargeCode.PAID
        # Posting the page again charges nothing twice: the reference was paid.
        await browser.post(second.redirect_url, data={"purchaseid": "4242"})

    case = await collector.case(case_id)
    assert case is not None
    assert case["state"] == "paid"
    assert [(a["attempt_no"], a["status"]) for a in case["attempts"]] == [
        (1, "declined"),
        (2, "approved"),
    ]
    paid_pages = [
        r
        for r in segpay.requests()
        if r["path"] == "/billing/poset.cgi" and "x" not in r["purchaseid"]
    ]
    assert len(paid_pages) == 2  # posted twice, one payment: the second found it paid
    assert await ledger.account_balance(journal.processor_clearing("segpay", "USD")) == 1250
    assert parse_hosted_key(hosted_key(case_id, 2)) == (case_id, 2)
    assert parse_hosted_key("collect:case_x:1:auth") is None
