"""Webhooks: signed, verified by an independent implementation, retried, deduplicated."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from metering import keys
from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.store import stream_entries
from settlement import webhooks
from settlement.errors import InvalidSignature
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from settlement.webhooks import Deliverer, WebhookConfig, sign, verify_signature
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab
from tests.settlement.receiver import receiving

SECRET = "whsec_test_0123456789"
NOW_S = 1_700_000_000


def independent_check(body: bytes, header: str, secret: str) -> bool:
    """Verify a signature without the product's code: parse, HMAC-SHA256 over "t.body"."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    signed = parts["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_signatures_verify_independently_and_with_the_helper() -> None:
    body = b'{"id":"evt_1","type":"tab.settled"}'
    header = sign(body, SECRET, NOW_S)
    assert header.startswith(f"t={NOW_S},v1=")
    assert independent_check(body, header, SECRET)
    verify_signature(body, header, SECRET, now_s=NOW_S + 299)  # within the window: no raise


@pytest.mark.parametrize(
    ("body", "header", "now_s", "why"),
    [
        (b'{"amount":2}', sign(b'{"amount":1}', SECRET, NOW_S), NOW_S, "does not match"),
        (b"{}", sign(b"{}", "another secret", NOW_S), NOW_S, "does not match"),
        (b"{}", sign(b"{}", SECRET, NOW_S), NOW_S + 301, "replay window"),
        (b"{}", sign(b"{}", SECRET, NOW_S + 301), NOW_S, "replay window"),
        (b"{}", "v1=abc", NOW_S, "malformed"),
        (b"{}", f"t={NOW_S}", NOW_S, "malformed"),
        (b"{}", "", NOW_S, "malformed"),
    ],
)
def test_tampered_stale_and_malformed_deliveries_are_rejected(
    body: bytes, header: str, now_s: int, why: str
) -> None:
    with pytest.raises(InvalidSignature, match=why):
        verify_signature(body, header, SECRET, now_s=now_s)


def test_a_rotated_secret_verifies_with_either_signature() -> None:
    body = b"{}"
    old = sign(body, "old", NOW_S).split(",")[1]
    header = sign(body, "new", NOW_S) + "," + old
    verify_signature(body, header, "old", now_s=NOW_S)
    verify_signature(body, header, "new", now_s=NOW_S)


async def test_a_settled_tab_is_announced_once_signed(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 420, room="roomA"))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    async with receiving() as receiver:
        config = WebhookConfig(url=receiver.url, secret=SECRET)
        worker = make_worker(meter, gateway, ledger, webhook_config=config)
        await worker.run_burst()
        await worker.settle_tab(ref)  # again: nothing new is queued
        await worker.run_burst()
    assert len(receiver.received) == 1
    delivery = receiver.received[0]
    header = delivery.headers["tipmeter-signature"]
    assert independent_check(delivery.body, header, SECRET)
    verify_signature(delivery.body, header, SECRET, now_s=clock.now_ms() // 1_000)
    event = orjson.loads(delivery.body)
    assert event["type"] == "tab.settled"
    assert event["id"] == webhooks.event_id("tab.settled", f"c1/{ref.tab_id}")
    data = event["data"]
    assert (data["tab_id"], data["outcome"], data["total_minor"]) == (ref.tab_id, "captured", 420)
    assert data["captured_minor"] == 420
    assert data["capture_id"] == gateway.captures[0].capture_id
    assert data["lines"] == [
        {"kind": "tip", "room": "roomA", "count": 1, "amount_minor": 420, "share_minor": 252}
    ]


async def test_a_declined_capture_is_announced_as_failed(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway, card="tok_capture_decline_expired_card")
    await meter.tip(ref, tip("t1", 100))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    async with receiving() as receiver:
        config = WebhookConfig(url=receiver.url, secret=SECRET)
        await make_worker(meter, gateway, ledger, webhook_config=config).run_burst()
    event = orjson.loads(receiver.received[0].body)
    assert event["type"] == "tab.settlement_failed"
    assert (event["data"]["decline_reason"], event["data"]["retryable"]) == (
        "expired_card",
        False,
    )


async def test_failed_deliveries_back_off_then_go_to_the_dead_letters(
    meter: Meter, clock: FakeClock
) -> None:
    async with receiving([500, 503, 200, 500, 500, 500]) as receiver:
        config = WebhookConfig(url=receiver.url, secret=SECRET, attempts_max=3, timeout_s=2)
        deliverer = Deliverer(meter.store, clock, config)
        for sid in ("c1/tab_a", "c2/tab_b"):
            code = await webhooks.enqueue(meter.store, config, "tab.settled", sid, {}, 0)
            assert code.value == "applied"
        first = await deliverer.deliver_due()  # a: 500, b: 503
        assert (first.delivered, first.retried) == (0, 2)
        clock.advance(999)
        assert (await deliverer.deliver_due()).retried == 0  # backoff: 1 s after attempt 1
        clock.advance(1)
        second = await deliverer.deliver_due()  # a: 200, b: 500
        assert (second.delivered, second.retried) == (1, 1)
        clock.advance(1_999)
        assert (await deliverer.deliver_due()).retried == 0  # backoff: 2 s after attempt 2
        clock.advance(1)
        third = await deliverer.deliver_due()  # b: 500, the last attempt
        assert (third.delivered, third.dead) == (0, 1)
    assert len(receiver.received) == 5
    dead = stream_entries(await meter.store.client.xrange(keys.webhook_dead_letters()))
    assert [fields["failure"] for _, fields in dead] == [b"HTTP 500"]
    assert await meter.store.client.hlen(keys.webhook_events()) == 0
    # Delivered and dead events are never queued again.
    again = await webhooks.enqueue(meter.store, config, "tab.settled", "c1/tab_a", {}, 0)
    assert again.value == "duplicate"


async def test_an_unreachable_receiver_is_retried(meter: Meter, clock: FakeClock) -> None:
    config = WebhookConfig(url="http://127.0.0.1:9/hooks", secret=SECRET, timeout_s=1)
    await webhooks.enqueue(meter.store, config, "tab.settled", "c1/t", {}, clock.now_ms())
    report = await Deliverer(meter.store, clock, config).deliver_due()
    assert report.retried == 1
