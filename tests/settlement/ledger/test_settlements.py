"""Every settlement outcome reaches the ledger once, itemized, balanced and conserved."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import Tab, TabRef
from metering.sessions import EndReason, Rate, SessionKind, SessionRef
from settlement import scripts
from settlement.ledger import journal
from settlement.ledger.errors import LedgerMismatch
from settlement.ledger.ledger import Ledger
from settlement.ledger.settlements import SettlementFacts
from settlement.outcomes import SettlementOutcome
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from settlement.scripts import SettlementRecord
from settlement.statements import build_statement
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab, record_tab_hold


async def _entries(ledger: Ledger, sid: str) -> dict[str, list[tuple[str, int]]]:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            """
            SELECT e.entry_id, c.name, a.code, p.amount_minor
            FROM journal_entries e JOIN entry_codes c USING (code)
            JOIN postings p USING (entry_id) JOIN accounts a USING (account_id)
            WHERE e.settlement_id = %s ORDER BY e.entry_id, p.posting_no
            """,
            (sid,),
        )
        rows = await cursor.fetchall()
    found: dict[str, list[tuple[str, int]]] = {}
    for row in rows:
        found.setdefault(row["name"], []).append((row["code"], row["amount_minor"]))
    return found


async def test_a_captured_tab_is_recorded_with_lines_shows_shares_and_two_entries(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    await meter.rooms.set_payout_bp("roomA", 6_000)
    ref = await open_backed_tab(meter, gateway)
    assert (await meter.tip(ref, tip("t1", 301, room="roomA"))).code.ok
    assert (await meter.tip(ref, tip("t2", 250, room="roomB"))).code.ok
    await meter.sessions.set_rates("roomA", {SessionKind.PRIVATE: Rate(120)})
    started = await meter.sessions.start(
        ref, session_id="s1", room="roomA", kind="private", currency="USD", owner="o1"
    )
    assert started.code.ok, started
    show = SessionRef(ref.customer, "s1", ref.tab_id)
    for _ in range(30):
        clock.advance(1_000)
        await meter.sessions.tick("o1", [show])
    await meter.sessions.end(show, EndReason.STOPPED)
    view = await meter.sessions.read(ref.customer, "s1")
    assert view is not None
    assert view.billed_s >= 30
    await request_settlement(meter, ref, FreezeReason.MERCHANT)

    report = await make_worker(meter, gateway, ledger).run_burst()

    assert report.statuses == {"settled": 1}
    redis_found = await scripts.read_settlement(meter.store, ref)
    ledger_found = await ledger.read_tab(ref)
    assert redis_found is not None
    assert ledger_found is not None
    # The ledger gives back the very tab and statement Redis held.
    # (A tab opened straight on the meter names no processor; the ledger names the default.)
    assert ledger_found[0] == dataclasses.replace(
        redis_found[0], burn_minor_per_minute=0, processor="sandbox"
    )
    statement = build_statement(*ledger_found)
    assert statement == build_statement(*redis_found)
    total = 301 + 250 + view.amount_minor
    assert statement.captured_minor == statement.total_minor == total
    sid = f"{ref.customer}/{ref.tab_id}"
    entries = await _entries(ledger, sid)
    shares = dict(statement.model_shares)
    assert entries["tab_charge"] == [
        (f"customer_tab:{sid}:USD", total),
        ("model_payable:roomA:USD", -shares["roomA"]),
        ("model_payable:roomB:USD", -shares["roomB"]),
        ("platform_revenue:USD", -statement.platform_minor),
    ]
    assert entries["tab_capture"] == [
        ("processor_clearing:sandbox:USD", total),
        (f"customer_tab:{sid}:USD", -total),
    ]
    assert await ledger.account_balance(journal.customer_tab(sid, "USD")) == 0
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT session_id, room, kind, billed_s, amount_minor, end_reason "
            "FROM settlement_sessions WHERE settlement_id = %s",
            (sid,),
        )
        shows = [tuple(row.values()) for row in await cursor.fetchall()]
    assert shows == [("s1", "roomA", "private", view.billed_s, view.amount_minor, "stopped")]
    earnings = {e.currency: e for e in await ledger.room_earnings("roomA")}
    assert earnings["USD"].share_minor == shares["roomA"]
    assert earnings["USD"].gross_minor == 301 + view.amount_minor


async def test_a_declined_tab_is_recorded_as_owed_with_what_collection_needs(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    card = "tok_capture_decline_insufficient_funds"
    ref = await open_backed_tab(meter, gateway, card=card)
    await record_tab_hold(meter, ledger, ref, card, clock.now_ms())
    await meter.tip(ref, tip("t1", 700))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    assert (await make_worker(meter, gateway, ledger).run_burst()).statuses == {"failed": 1}

    sid = f"{ref.customer}/{ref.tab_id}"
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT outcome, state, payment_method, decline_reason, retryable, accrued_minor, "
            "captured_minor, capture_id FROM settlements WHERE outcome IN ('declined', 'expired')"
        )
        unpaid = [tuple(row.values()) for row in await cursor.fetchall()]
    assert unpaid == [("declined", "failed", card, "insufficient_funds", True, 700, 0, None)]
    assert (await _entries(ledger, sid))["tab_receivable"] == [
        (f"customer_tab:{sid}:USD", 700),
        ("earnings_pending:USD", -700),
    ]
    # The customer owes it; the model's part waits for collection, not in her payable.
    assert await ledger.account_balance(journal.customer_tab(sid, "USD")) == 700
    assert [e.pending_minor for e in await ledger.room_earnings("room1")] == [420]
    assert [e.share_minor for e in await ledger.room_earnings("room1")] == [0]


async def test_a_voided_tab_is_recorded_without_an_entry(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await request_settlement(meter, ref, FreezeReason.CUSTOMER_ENDED)
    assert (await make_worker(meter, gateway, ledger).run_burst()).statuses == {"voided": 1}
    found = await ledger.read_tab(ref)
    assert found is not None
    assert found[0].state is TabState.VOIDED
    assert await _entries(ledger, f"{ref.customer}/{ref.tab_id}") == {}


async def _settled_for(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, amount_minor: int
) -> tuple[Tab, SettlementRecord]:
    """A tab with one tip of ``amount_minor``, settled by a worker; as Redis holds it."""
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", amount_minor))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    await make_worker(meter, gateway, ledger).run_burst()
    found = await scripts.read_settlement(meter.store, ref)
    assert found is not None
    return found


async def test_recording_again_writes_nothing_and_a_different_outcome_is_refused(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    tab, record = await _settled_for(meter, gateway, ledger, 500)
    facts = SettlementFacts(tab, record, build_statement(tab, record), "sandbox")
    assert not await ledger.record_settlement(facts)
    altered = dataclasses.replace(
        record, outcome=SettlementOutcome.DECLINED, captured_minor=0, capture_id=""
    )
    with pytest.raises(LedgerMismatch, match="was recorded as captured"):
        await ledger.record_settlement(dataclasses.replace(facts, record=altered))


async def test_the_database_refuses_a_settlement_whose_lines_do_not_add_up(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    tab, record = await _settled_for(meter, gateway, ledger, 500)
    statement = build_statement(tab, record)
    forged = dataclasses.replace(
        tab, ref=TabRef("c2", tab.ref.tab_id), accrued_minor=600, cap_minor=5_000
    )
    facts = SettlementFacts(
        forged,
        dataclasses.replace(record, captured_minor=600, capture_id="cap_forged"),
        statement,
        "sandbox",
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="lines sum to 500, accrued is 600"):
        await ledger.record_settlement(facts)
    assert await ledger.read_tab(forged.ref) is None
