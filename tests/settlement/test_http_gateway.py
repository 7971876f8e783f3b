"""The sandbox as a separate HTTP process, through the HttpGateway client."""

from __future__ import annotations

import asyncio

import pytest

from settlement.gateway import (
    DeclineReason,
    GatewayRequestError,
    GatewayUnavailable,
    Outcome,
)
from settlement.sandbox import Fault
from settlement.sandbox_http import HttpGateway
from tests.support.processes import TipmeterProcess


async def test_the_protocol_over_http(sandbox_process: TipmeterProcess) -> None:
    gateway = HttpGateway(sandbox_process.base_url, timeout_s=5)
    hold = await gateway.authorize(
        idempotency_key="auth:1", payment_method="tok_visa", amount_minor=5_000, currency="USD"
    )
    assert (hold.outcome, hold.amount_minor, hold.currency) == (Outcome.APPROVED, 5_000, "USD")
    assert hold.expires_at_ms > 0
    raised = await gateway.increment(
        idempotency_key="inc:1", auth_ref=hold.auth_ref, amount_minor=6_000
    )
    assert raised.amount_minor == 6_000
    capture = await gateway.capture(
        idempotency_key="capture:1", auth_ref=hold.auth_ref, amount_minor=1_234
    )
    assert (capture.approved, capture.released_minor) == (True, 6_000 - 1_234)
    again = await gateway.capture(
        idempotency_key="capture:1", auth_ref=hold.auth_ref, amount_minor=1_234
    )
    assert again == capture
    assert await gateway.lookup("capture:1") == capture
    assert await gateway.lookup("capture:never") is None
    refund = await gateway.refund(
        idempotency_key="refund:1", capture_id=capture.capture_id, amount_minor=234
    )
    assert refund.refunded_total_minor == 234
    log = await gateway.capture_log()
    assert [(c["capture_id"], c["amount_minor"]) for c in log] == [(capture.capture_id, 1_234)]
    with pytest.raises(GatewayRequestError, match="409"):
        await gateway.capture(idempotency_key="capture:2", auth_ref=hold.auth_ref, amount_minor=1)

    declined = await gateway.authorize(
        idempotency_key="auth:2",
        payment_method="tok_decline_lost_card",
        amount_minor=100,
        currency="EUR",
    )
    assert declined.decline_reason is DeclineReason.LOST_CARD
    other = await gateway.authorize(
        idempotency_key="auth:3", payment_method="tok_visa", amount_minor=100, currency="EUR"
    )
    voided = await gateway.void(idempotency_key="void:3", auth_ref=other.auth_ref)
    assert voided.released_minor == 100


async def test_faults_over_http(sandbox_process: TipmeterProcess) -> None:
    gateway = HttpGateway(sandbox_process.base_url, timeout_s=0.5)
    hold = await gateway.authorize(
        idempotency_key="a", payment_method="tok_visa", amount_minor=900, currency="USD"
    )
    await gateway.inject("capture", Fault.TIMEOUT_AFTER_COMMIT)
    with pytest.raises(GatewayUnavailable):
        await gateway.capture(idempotency_key="c", auth_ref=hold.auth_ref, amount_minor=500)
    assert len(await gateway.capture_log()) == 1
    await gateway.inject("capture", Fault.HANG)
    second = await gateway.authorize(
        idempotency_key="b", payment_method="tok_visa", amount_minor=900, currency="USD"
    )
    with pytest.raises(GatewayUnavailable, match="no reply"):
        await gateway.capture(idempotency_key="d", auth_ref=second.auth_ref, amount_minor=500)
    assert len(await gateway.capture_log()) == 1  # the hung call never committed


async def test_a_stopped_sandbox_is_unavailable(sandbox_process: TipmeterProcess) -> None:
    gateway = HttpGateway(sandbox_process.base_url, timeout_s=1)
    sandbox_process.stop()
    await asyncio.sleep(0)
    with pytest.raises(GatewayUnavailable):
        await gateway.lookup("x")
