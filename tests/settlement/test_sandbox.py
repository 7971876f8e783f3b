"""The sandbox gateway: deterministic test cards, idempotency by key, faults."""

from __future__ import annotations

import pytest

from metering.clock import FakeClock
from settlement.gateway import (
    DeclineReason,
    GatewayRequestError,
    GatewayUnavailable,
    Outcome,
)
from settlement.sandbox import HOLD_TTL_MS_DEFAULT, Fault, SandboxGateway


@pytest.fixture
def gateway() -> SandboxGateway:
    return SandboxGateway(clock=FakeClock())


async def test_hold_raise_capture_once(gateway: SandboxGateway) -> None:
    hold = await gateway.authorize(
        idempotency_key="auth:t1", payment_method="tok_visa", amount_minor=5_000, currency="USD"
    )
    assert hold.approved
    raised = await gateway.increment(
        idempotency_key="inc:t1:8000", auth_ref=hold.auth_ref, amount_minor=8_000
    )
    assert (raised.approved, raised.amount_minor) == (True, 8_000)
    capture = await gateway.capture(
        idempotency_key="cap:t1", auth_ref=hold.auth_ref, amount_minor=3_210
    )
    assert (capture.approved, capture.amount_minor, capture.released_minor) == (True, 3_210, 4_790)
    # The same key returns the same capture; nothing is charged twice.
    again = await gateway.capture(
        idempotency_key="cap:t1", auth_ref=hold.auth_ref, amount_minor=3_210
    )
    assert again == capture
    assert [c.amount_minor for c in gateway.captures] == [3_210]
    with pytest.raises(GatewayRequestError, match="already captured"):
        await gateway.capture(
            idempotency_key="cap:t1:other", auth_ref=hold.auth_ref, amount_minor=1
        )
    with pytest.raises(GatewayRequestError, match="other parameters"):
        await gateway.capture(idempotency_key="cap:t1", auth_ref=hold.auth_ref, amount_minor=9)


@pytest.mark.parametrize("reason", list(DeclineReason))
async def test_each_decline_reason_has_a_card(
    gateway: SandboxGateway, reason: DeclineReason
) -> None:
    declined = await gateway.authorize(
        idempotency_key=f"a:{reason}",
        payment_method=f"tok_decline_{reason}",
        amount_minor=100,
        currency="USD",
    )
    assert (declined.outcome, declined.decline_reason) == (Outcome.DECLINED, reason)
    hold = await gateway.authorize(
        idempotency_key=f"b:{reason}",
        payment_method=f"tok_capture_decline_{reason}",
        amount_minor=100,
        currency="USD",
    )
    assert hold.approved
    capture = await gateway.capture(
        idempotency_key=f"c:{reason}", auth_ref=hold.auth_ref, amount_minor=50
    )
    assert (capture.outcome, capture.decline_reason) == (Outcome.DECLINED, reason)
    assert gateway.captures == []


async def test_unknown_cards_are_invalid(gateway: SandboxGateway) -> None:
    hold = await gateway.authorize(
        idempotency_key="k", payment_method="4242", amount_minor=100, currency="USD"
    )
    assert hold.decline_reason is DeclineReason.INVALID_CARD


async def test_increment_decline_card(gateway: SandboxGateway) -> None:
    hold = await gateway.authorize(
        idempotency_key="k",
        payment_method="tok_increment_decline",
        amount_minor=100,
        currency="USD",
    )
    raised = await gateway.increment(idempotency_key="i", auth_ref=hold.auth_ref, amount_minor=500)
    assert (raised.outcome, raised.amount_minor) == (Outcome.DECLINED, 100)


async def test_void_and_refund_bounds(gateway: SandboxGateway) -> None:
    first = await gateway.authorize(
        idempotency_key="a1", payment_method="tok_visa", amount_minor=900, currency="EUR"
    )
    voided = await gateway.void(idempotency_key="v1", auth_ref=first.auth_ref)
    assert voided.released_minor == 900
    with pytest.raises(GatewayRequestError):
        await gateway.capture(idempotency_key="c1", auth_ref=first.auth_ref, amount_minor=1)
    second = await gateway.authorize(
        idempotency_key="a2", payment_method="tok_visa", amount_minor=900, currency="EUR"
    )
    capture = await gateway.capture(
        idempotency_key="c2", auth_ref=second.auth_ref, amount_minor=600
    )
    refund = await gateway.refund(
        idempotency_key="r1", capture_id=capture.capture_id, amount_minor=400
    )
    assert refund.refunded_total_minor == 400
    with pytest.raises(GatewayRequestError, match="exceed"):
        await gateway.refund(idempotency_key="r2", capture_id=capture.capture_id, amount_minor=201)
    assert (
        await gateway.refund(idempotency_key="r3", capture_id=capture.capture_id, amount_minor=200)
    ).refunded_total_minor == 600


async def test_no_capture_after_the_hold_expired() -> None:
    clock = FakeClock()
    gateway = SandboxGateway(clock=clock)
    hold = await gateway.authorize(
        idempotency_key="a", payment_method="tok_visa", amount_minor=100, currency="USD"
    )
    clock.advance(HOLD_TTL_MS_DEFAULT)
    with pytest.raises(GatewayRequestError, match="expired"):
        await gateway.capture(idempotency_key="c", auth_ref=hold.auth_ref, amount_minor=100)
    assert gateway.captures == []


async def test_timeout_after_commit_then_retry_returns_the_committed_capture(
    gateway: SandboxGateway,
) -> None:
    hold = await gateway.authorize(
        idempotency_key="a", payment_method="tok_visa", amount_minor=100, currency="USD"
    )
    gateway.inject("capture", Fault.TIMEOUT_AFTER_COMMIT)
    with pytest.raises(GatewayUnavailable):
        await gateway.capture(idempotency_key="c", auth_ref=hold.auth_ref, amount_minor=70)
    assert len(gateway.captures) == 1
    assert await gateway.lookup("c") is not None
    retry = await gateway.capture(idempotency_key="c", auth_ref=hold.auth_ref, amount_minor=70)
    assert retry.approved
    assert len(gateway.captures) == 1


async def test_failure_before_commit_records_nothing(gateway: SandboxGateway) -> None:
    hold = await gateway.authorize(
        idempotency_key="a", payment_method="tok_visa", amount_minor=100, currency="USD"
    )
    gateway.inject("capture", Fault.FAIL_BEFORE_COMMIT)
    with pytest.raises(GatewayUnavailable):
        await gateway.capture(idempotency_key="c", auth_ref=hold.auth_ref, amount_minor=70)
    assert gateway.captures == []
    assert await gateway.lookup("c") is None
    assert (
        await gateway.capture(idempotency_key="c", auth_ref=hold.auth_ref, amount_minor=70)
    ).approved
