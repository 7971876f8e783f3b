"""Purchases through settlement: a voided request is never captured, each purchase itemized."""

from __future__ import annotations

from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Code
from metering.purchase_lifecycle import PurchaseEvent
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from settlement.statements import read_statement, statement_data
from tests.metering.helpers import buy, tip
from tests.settlement.helpers import make_worker, open_backed_tab


async def test_a_voided_request_is_never_captured(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    await meter.rooms.set_payout_bp("room1", 6_000)
    ref = await open_backed_tab(meter, gateway)
    assert (await meter.tip(ref, tip("t1", 100))).code is Code.APPLIED
    for purchase_id in ("declined", "done"):
        assert (await meter.buy(ref, buy(purchase_id, 300))).code is Code.APPLIED
    unlock = buy("hd", 200, item_id="hd", item_name="HD", item_kind="unlock")
    assert (await meter.buy(ref, unlock)).code is Code.APPLIED
    assert (await meter.void(ref.customer, "declined", PurchaseEvent.DECLINE)).code.ok
    assert (await meter.fulfil(ref.customer, "done")).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)

    report = await make_worker(meter, gateway, ledger).run_burst()

    assert report.statuses == {"settled": 1}
    assert [c.amount_minor for c in gateway.captures] == [600]
    statement = await read_statement(meter.store, ref)
    assert statement is not None
    assert statement.total_minor == statement.captured_minor == 600
    assert [
        (line.kind, line.purchase_id, line.amount_minor, line.state, line.voided_minor)
        for line in statement.lines
    ] == [
        ("tip", "", 100, "", 0),
        ("purchase", "declined", 0, "voided", 300),
        ("purchase", "done", 300, "fulfilled", 0),
        ("purchase", "hd", 200, "granted", 0),
    ]
    data = statement_data(statement)
    assert data["lines"][1]["item_name"] == "Dance"
    assert statement.platform_minor + sum(share for _, share in statement.model_shares) == 600

    # The ledger of record holds what was captured: the voided request is not a line there.
    recorded = await ledger.read_tab(ref)
    assert recorded is not None
    tab, record = recorded
    assert record.captured_minor == 600
    assert [(line.kind, line.line_id, line.amount_minor) for line in tab.lines] == [
        ("tip", "tip:t1", 100),
        ("purchase", "buy:done", 300),
        ("purchase", "buy:hd", 200),
    ]
