"""The Segpay Post Pay adapter against the local process that speaks Segpay's documented
requests (and, where Segpay's documentation is silent, the assumptions of SegpayWire)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metering.clock import FakeClock
from settlement.gateway import (
    AuthorizationStatus,
    DeclineReason,
    GatewayCredentialsRejected,
    GatewayRequestError,
    Outcome,
)
from settlement.processors.segpay import SegpayGateway, SegpayWire, dollars, minor_of
from tests.settlement.processors.conftest import (
    ETICKET_ID,
    SegpayProcess,
    start_segpay,
    stop_segpay,
)


def _gateway(segpay: SegpayProcess, clock: FakeClock, eticket: str = ETICKET_ID) -> SegpayGateway:
    return SegpayGateway(segpay.url, eticket_id=eticket, timeout_s=5, clock=clock)


def test_amounts_are_decimal_dollars_in_integer_arithmetic() -> None:
    assert [dollars(m) for m in (2_000, 5, 123_456)] == ["20.00", "0.05", "1234.56"]
    assert [minor_of(t) for t in ("20.00", "0.5", "7")] == [2_000, 50, 700]
    for bad in ("1e3", "-1.00", "1.234", "", "NaN"):
        with pytest.raises(ValueError, match="dollar"):
            minor_of(bad)


async def test_post_pay_auth_sends_the_documented_fields_and_the_capture_finalizes(
    segpay: SegpayProcess, clock: FakeClock
) -> None:
    gateway = _gateway(segpay, clock)
    hold = await gateway.authorize(
        idempotency_key="auth:tab_1", payment_method="847263533", amount_minor=5_000, currency="USD"
    )
    assert (hold.outcome, hold.amount_minor, hold.expires_at_ms) == (
        Outcome.APPROVED,
        5_000,
        clock.now_ms() + SegpayWire.HOLD_TTL_MS,
    )
    assert hold.auth_ref == hold.processor_ref != ""
    auth_request = segpay.requests()[0]
    assert auth_request["path"] == SegpayWire.AUTH_PATH
    assert (auth_request["eticketid"], auth_request["purchaseid"], auth_request["amount"]) == (
        ETICKET_ID,
        "847263533",
        "50.00",
    )

    capture = await gateway.capture(
        idempotency_key="capture:c/tab_1", auth_ref=hold.auth_ref, amount_minor=1_234
    )
    assert (capture.approved, capture.amount_minor, capture.capture_id) == (
        True,
        1_234,
        hold.auth_ref,
    )
    # The same request again (a worker retry): the first answer, no second capture.
    again = await gateway.capture(
        idempotency_key="capture:c/tab_1", auth_ref=hold.auth_ref, amount_minor=1_234
    )
    assert again == capture
    # Another capture of a finalized authorization is refused.
    other = await gateway.capture(
        idempotency_key="capture:other", auth_ref=hold.auth_ref, amount_minor=100
    )
    assert (other.outcome, other.decline_code) == (Outcome.DECLINED, "already_captured")
    found = await gateway.lookup_authorization(hold.auth_ref)
    assert found is not None
    assert (found.status, found.amount_minor, found.captured_minor) == (
        AuthorizationStatus.CAPTURED,
        5_000,
        1_234,
    )


@pytest.mark.parametrize(
    ("purchase", "reason"),
    [
        ("1001x05", DeclineReason.DO_NOT_HONOR),
        ("1001x51", DeclineReason.INSUFFICIENT_FUNDS),
        ("1001x43", DeclineReason.STOLEN_CARD),
        ("1001xZZ", DeclineReason.UNRECOGNIZED),
    ],
)
async def test_declines_map_to_reasons_with_the_network_rules(
    segpay: SegpayProcess, clock: FakeClock, purchase: str, reason: DeclineReason
) -> None:
    hold = await _gateway(segpay, clock).authorize(
        idempotency_key="auth:t", payment_method=purchase, amount_minor=1_000, currency="USD"
    )
    assert (hold.outcome, hold.decline_reason, hold.decline_code) == (
        Outcome.DECLINED,
        reason,
        purchase.rsplit("x", 1)[1],
    )


async def test_what_post_pay_cannot_do_is_refused_or_reported(
    segpay: SegpayProcess, clock: FakeClock
) -> None:
    gateway = _gateway(segpay, clock)
    assert not gateway.capabilities.incremental_authorization
    with pytest.raises(GatewayRequestError, match="USD"):
        await gateway.authorize(
            idempotency_key="a", payment_method="1", amount_minor=100, currency="EUR"
        )
    with pytest.raises(GatewayRequestError, match="incremental"):
        await gateway.increment(idempotency_key="i", auth_ref="sp1", amount_minor=200)
    voided = await gateway.void(idempotency_key="v", auth_ref="sp1")
    assert voided.released_minor == 0  # no void: the authorization lapses
    with pytest.raises(GatewayRequestError, match="400"):
        await _gateway(segpay, clock, eticket="1:2").authorize(
            idempotency_key="a2", payment_method="1", amount_minor=100, currency="USD"
        )


async def test_a_server_outside_the_whitelist_is_told_so(tmp_path: Path, clock: FakeClock) -> None:
    elsewhere = start_segpay(tmp_path, allow="10.9.8.7")
    try:
        with pytest.raises(GatewayCredentialsRejected, match="whitelisted"):
            await _gateway(elsewhere, clock).authorize(
                idempotency_key="a", payment_method="1", amount_minor=100, currency="USD"
            )
    finally:
        stop_segpay(elsewhere)
