"""A request declined or expired after its tab froze is refunded after the capture, by itself,
through the refunds flow (server/catalog_refunds.py, docs/purchases.md): a real settlement
worker, the sandbox processor, the ledger of record on a real PostgreSQL."""

from __future__ import annotations

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from metering.purchase_lifecycle import PurchaseState
from server.catalog import Shop, parse_item
from server.catalog_refunds import REFUND_RETRY_MS, refund_id_of, refund_owed
from settlement.gateway import RefundResult
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.refunds.service import Refunds
from settlement.sandbox import SandboxGateway
from tests.settlement.helpers import make_worker, open_backed_tab


async def _shop_with_requests(
    meter: Meter, gateway: SandboxGateway, *purchase_ids: str
) -> tuple[Shop, TabRef]:
    shop = Shop(meter, request_ttl_s=60)
    raw = {"name": "Dance", "kind": "request", "prices": {"USD": 300}}
    await shop.put("room1", parse_item("dance", raw, meter.limits))
    ref = await open_backed_tab(meter, gateway)
    for purchase_id in purchase_ids:
        outcome = await shop.buy(
            ref, currency="USD", room="room1", item_id="dance", purchase_id=purchase_id
        )
        assert outcome.code is Code.APPLIED
    return shop, ref


async def test_a_request_declined_after_the_freeze_is_refunded_once_captured(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    shop, ref = await _shop_with_requests(meter, gateway, "declined", "expired", "done")
    refunds = Refunds(ledger.database, lambda _name: gateway, clock)
    await request_settlement(meter, ref, FreezeReason.MERCHANT)

    # The tab froze: the model's decline cannot void the line any more; it leaves her queue
    # and waits for the capture. The other request expires after the freeze the same way.
    assert (await shop.decline("room1", "c1", "declined")).code is Code.TAB_NOT_OPEN
    assert (await shop.fulfil("room1", "c1", "done")).code is Code.APPLIED
    clock.advance(60_000)
    [expired] = await shop.expire_due(clock.now_ms())
    assert expired.code is Code.TAB_NOT_OPEN
    assert await shop.queue("room1") == []
    # Not captured yet: nothing to refund, looked at again later.
    waiting = await refund_owed(shop, refunds, clock.now_ms())
    assert sorted((r.purchase_id, r.status) for r in waiting) == [
        ("declined", "not_in_ledger"),
        ("expired", "not_in_ledger"),
    ]
    assert await refund_owed(shop, refunds, clock.now_ms()) == []

    # (The minute that passed queued a second trigger, the idle one: one capture all the same.)
    report = await make_worker(meter, gateway, ledger).run_burst()
    assert set(report.statuses) == {"settled"}
    assert [c.amount_minor for c in gateway.captures] == [900]
    clock.advance(REFUND_RETRY_MS)
    done = await refund_owed(shop, refunds, clock.now_ms())
    assert sorted((r.purchase_id, r.status) for r in done) == [
        ("declined", "succeeded"),
        ("expired", "succeeded"),
    ]

    # Each refunded in full through the refunds flow, once, and recorded on the purchase.
    for purchase_id in ("declined", "expired"):
        refund = await refunds.read(refund_id_of("c1", purchase_id))
        assert (refund["status"], refund["amount_minor"]) == ("succeeded", 300)
        view = await meter.purchases.read("c1", purchase_id)
        assert view is not None
        assert view.state is PurchaseState.REFUNDED
    done_view = await meter.purchases.read("c1", "done")
    assert done_view is not None
    assert done_view.state is PurchaseState.FULFILLED
    assert await _refunded_at_processor(gateway, "c1", "declined", "expired") == 600

    # Idempotent: the list is empty, and a repeated look (another server, a retry) refunds
    # nothing twice.
    clock.advance(REFUND_RETRY_MS)
    assert await refund_owed(shop, refunds, clock.now_ms()) == []
    declined = await meter.purchases.read("c1", "declined")
    assert declined is not None
    await shop._owe_refund(declined)  # listed again, as a racing server's decline would
    [again] = await refund_owed(shop, refunds, clock.now_ms())
    assert again.status == "not_pending"
    assert await _refunded_at_processor(gateway, "c1", "declined", "expired") == 600


async def _refunded_at_processor(gateway: SandboxGateway, customer: str, *ids: str) -> int:
    """What the sandbox refunded of the capture, as its own record of the refunds says."""
    totals = []
    for purchase_id in ids:
        result = await gateway.lookup(f"refund:{refund_id_of(customer, purchase_id)}")
        assert isinstance(result, RefundResult)
        totals.append(result.refunded_total_minor)
    return max(totals)
