"""Dispute notices: signatures checked over the raw body, tipmeter's and Stripe's shapes read
into one notice, anything else refused."""

from __future__ import annotations

import orjson
import pytest

from settlement.errors import InvalidSignature
from settlement.refunds.notices import (
    NoticeMalformed,
    read_notice,
    sandbox_notice,
    signed_headers,
)

SECRET = "whsec_test_secret"
NOW_S = 1_790_000_000


def _stripe_event(status: str = "needs_response", kind: str = "charge.dispute.created") -> bytes:
    return orjson.dumps(
        {
            "id": "evt_1",
            "type": kind,
            "data": {
                "object": {
                    "id": "dp_1Q",
                    "object": "dispute",
                    "amount": 1_250,
                    "currency": "usd",
                    "charge": "ch_1Q",
                    "payment_intent": "pi_3Q",
                    "reason": "fraudulent",
                    "status": status,
                    "created": NOW_S - 60,
                    "balance_transactions": [{"fee": 1_500}, {"fee": 0}],
                }
            },
        }
    )


def test_a_stripe_dispute_maps_to_the_capture_the_adapter_recorded() -> None:
    body = _stripe_event()
    notice = read_notice(
        "stripe-eu", body, signed_headers(body, SECRET, NOW_S, stripe=True), SECRET, now_s=NOW_S
    )
    assert (notice.dispute_id, notice.capture_id, notice.currency) == ("dp_1Q", "pi_3Q", "USD")
    assert (notice.amount_minor, notice.fee_minor, notice.status) == (1_250, 1_500, "open")
    assert notice.at_ms == (NOW_S - 60) * 1000
    for stripe_status, status in (("won", "won"), ("lost", "lost"), ("under_review", "open")):
        closed = _stripe_event(stripe_status, "charge.dispute.closed")
        read = read_notice(
            "stripe-eu",
            closed,
            signed_headers(closed, SECRET, NOW_S, stripe=True),
            SECRET,
            now_s=NOW_S,
        )
        assert read.status == status


def test_tipmeters_own_notice_is_read() -> None:
    body = sandbox_notice(
        dispute_id="dp_s",
        capture_id="cap_1",
        currency="EUR",
        amount_minor=900,
        fee_minor=0,
        status="won",
    )
    notice = read_notice("sandbox", body, signed_headers(body, SECRET, NOW_S), SECRET, now_s=NOW_S)
    assert (notice.processor, notice.dispute_id, notice.status) == ("sandbox", "dp_s", "won")


def test_a_notice_signed_with_another_secret_or_replayed_late_is_refused() -> None:
    body = _stripe_event()
    with pytest.raises(InvalidSignature):
        read_notice(
            "s", body, signed_headers(body, "other", NOW_S, stripe=True), SECRET, now_s=NOW_S
        )
    with pytest.raises(InvalidSignature):
        read_notice(
            "s", body, signed_headers(body, SECRET, NOW_S - 3_600, stripe=True), SECRET, now_s=NOW_S
        )
    with pytest.raises(InvalidSignature):
        read_notice(
            "s", body + b" ", signed_headers(body, SECRET, NOW_S, stripe=True), SECRET, now_s=NOW_S
        )


def test_a_signed_notice_that_is_not_a_dispute_is_refused() -> None:
    for body in (
        _stripe_event(kind="charge.refunded"),
        orjson.dumps({"type": "charge.dispute.created", "data": {"object": {"id": "dp"}}}),
        b"[]",
    ):
        with pytest.raises(NoticeMalformed):
            read_notice(
                "s", body, signed_headers(body, SECRET, NOW_S, stripe=True), SECRET, now_s=NOW_S
            )
    own = orjson.dumps(
        {"id": "dp", "capture_id": "c", "currency": "USD", "amount_minor": 1.5, "status": "open"}
    )
    with pytest.raises(NoticeMalformed):
        read_notice("s", own, signed_headers(own, SECRET, NOW_S), SECRET, now_s=NOW_S)
