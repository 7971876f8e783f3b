"""Purchases through settlement: a voided request is never captured, each purchase itemized."""

from __future__ import annotations

import psycopg
import pytest

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
    assert [
        (line.kind, line.line_id, line.amount_minor, line.item_id, line.item_name, line.item_kind)
        for line in tab.lines
    ] == [
        ("tip", "tip:t1", 100, "", "", ""),
        ("purchase", "buy:done", 300, "dance", "Dance", "request"),
        ("purchase", "buy:hd", 200, "hd", "HD", "unlock"),
    ]
    # Recorded as purchases of their own kind (migration 0010), not as tips.
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT line_id, kind, purchase_kind FROM settlement_lines ORDER BY seq"
        )
        rows = [(r["line_id"], r["kind"], r["purchase_kind"]) for r in await cursor.fetchall()]
    assert rows == [
        ("tip:t1", "tip", ""),
        ("buy:done", "purchase", "request"),
        ("buy:hd", "purchase", "unlock"),
    ]


async def test_the_ledger_admits_an_item_on_purchase_lines_only(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    assert (await meter.tip(ref, tip("t1", 100))).code is Code.APPLIED
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    assert (await make_worker(meter, gateway, ledger).run_burst()).statuses == {"settled": 1}
    insert = """
        INSERT INTO settlement_lines (settlement_id, line_id, seq, kind, room, at, amount_minor,
            payout_bp, share_minor, item_id, purchase_kind)
        SELECT settlement_id, %s, 9, %s, 'room1', now(), 1, 0, 0, 'x', %s FROM settlements
    """
    for line_id, kind, purchase_kind in (
        ("tip:t9", "tip", "request"),  # a tip names no item
        ("tip:t9", "purchase", "request"),  # a purchase's id is buy:...
        ("buy:b9", "tip", ""),  # and a buy:... line is a purchase
        ("buy:b9", "purchase", "bundle"),  # of a known kind
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            async with ledger.database.connection() as conn:
                await conn.execute(insert, (line_id, kind, purchase_kind))
