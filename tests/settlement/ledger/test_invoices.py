"""Invoices of Post Pay captures and credit notes of their refunds.

Real Redis (the meter and the worker that settles), the sandbox processor, a real PostgreSQL:
a captured tab gets one invoice, taxed by the one rule at its customer's country, in the
transaction of its ledger record; each refund of it one credit note in its own gap-free series,
crediting that invoice; the tax moves to and back from ``tax_payable``; the accountants' export
totals equal the ledger's.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import mailbox
from collections import defaultdict
from pathlib import Path
from typing import Any

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import TabRef
from settlement.ledger import invoices, journal
from settlement.ledger.holds import HoldCustomer
from settlement.ledger.ledger import Ledger
from settlement.ledger.settlements import settlement_id_of
from settlement.ledger.tax import tax_line
from settlement.ledger.times import at
from settlement.notify.log import LogNotifier
from settlement.notify.smtp import SmtpConfig, SmtpNotifier
from settlement.queue import request_settlement
from settlement.receipts import CATALOGUE, Receipts
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest, Refunds
from settlement.sandbox import SandboxGateway
from settlement.subscriptions import export
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab, record_tab_hold
from tests.settlement.notify.test_notify import smtp_server
from tests.settlement.refunds.helpers import refund_by_support, watch_show

__all__ = ["smtp_server"]

DAY_MS = 86_400_000


async def _captured(
    meter: Meter,
    gateway: SandboxGateway,
    ledger: Ledger,
    clock: FakeClock,
    *,
    customer: str,
    country: str,
    tips: tuple[tuple[str, int, str], ...] = (("t1", 301, "roomA"), ("t2", 250, "roomB")),
    show_s: int = 90,
    language: str = "en",
) -> TabRef:
    """A tab of ``customer`` in ``country`` (recorded on its hold, as the API does), tipped,
    with a show of ``show_s`` seconds in roomA at 1.20 a minute, settled by the worker."""
    await meter.rooms.set_payout_bp("roomA", 6_000)
    await meter.rooms.set_payout_bp("roomB", 7_000)
    ref = await open_backed_tab(meter, gateway, customer=customer)
    await record_tab_hold(
        meter,
        ledger,
        ref,
        "tok_visa",
        clock.now_ms(),
        HoldCustomer(
            country, "card country" if country else "", f"{customer}@example.com", language
        ),
    )
    for tip_id, amount, room in tips:
        assert (await meter.tip(ref, tip(f"{customer}-{tip_id}", amount, room=room))).code.ok
    if show_s:
        await watch_show(meter, clock, ref, f"s-{customer}", show_s)
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    report = await make_worker(meter, gateway, ledger).run_burst()
    assert report.statuses == {"settled": 1}, report
    return ref


async def _documents(ledger: Ledger, customer: str) -> list[dict[str, Any]]:
    async with ledger.database.connection() as conn:
        return list(reversed(await invoices.of_customer(conn, customer)))


def _refunds(ledger: Ledger, gateway: SandboxGateway, clock: FakeClock) -> Refunds:
    return Refunds(ledger.database, lambda _name: gateway, clock)


def _adds_up(document: dict[str, Any]) -> None:
    for line in document["lines"]:
        assert line["net_minor"] + line["tax_minor"] == line["total_minor"], line
    for field in ("net_minor", "tax_minor", "total_minor"):
        assert sum(line[field] for line in document["lines"]) == document[field], document


async def test_a_captured_tab_gets_one_invoice_taxed_at_its_country(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref = await _captured(meter, gateway, ledger, clock, customer="c-de", country="DE")
    found = await ledger.read_tab(ref)
    assert found is not None
    record = found[1]

    [invoice] = await _documents(ledger, "c-de")

    assert invoice["kind"] == "invoice"
    assert invoice["series"] == f"P{at(record.outcome_at_ms).year}"
    assert invoice["number"] == 1
    assert invoice["settlement_id"] == settlement_id_of(ref)
    assert invoice["capture_id"] == record.capture_id
    assert invoice["entry_id"] == f"tab_capture:{settlement_id_of(ref)}"
    assert invoice["country"] == "DE"
    assert invoice["country_evidence"] == "card country"
    assert invoice["tax_inclusive"] is True
    show = record.captured_minor - 301 - 250
    assert invoice["total_minor"] == record.captured_minor
    # One line per statement line: roomA's tips, roomA's show, roomB's tips; each taxed
    # (inclusive, 19 %) by the one rule on its own.
    assert [(line["description"], line["total_minor"]) for line in invoice["lines"]] == [
        ("tips in room roomA (1)", 301),
        (f"show in room roomA: {show // 2} s at 1.20 USD/min", show),
        ("tips in room roomB (1)", 250),
    ]
    for line in invoice["lines"]:
        assert line["tax_rate_bp"] == 1900
        assert line["tax_minor"] == tax_line(line["total_minor"], 1900, inclusive=True).tax_minor
    _adds_up(invoice)
    # The tax left the platform's part for tax_payable (the models' shares are the meter's).
    tax = invoice["tax_minor"]
    assert tax == 48 + tax_line(show, 1900, inclusive=True).tax_minor + 40
    assert await ledger.account_balance(invoices.tax_payable("USD")) == -tax
    shares = -sum(
        [await ledger.account_balance(journal.model_payable(r, "USD")) for r in ("roomA", "roomB")]
    )
    platform = await ledger.account_balance(journal.platform_revenue("USD"))
    assert platform == -(record.captured_minor - shares - tax)

    # Issuing again (a repeated record) writes nothing: the same invoice, no second number.
    async with ledger.database.connection() as conn, conn.transaction():
        tab = settlement_id_of(ref)
        again = invoices.TabInvoice(tab, "c-de", "USD", record.capture_id, "x", 0, ())
        assert await invoices.issue_for_settlement(conn, again, ref.tab_id) == invoice["invoice_id"]
    assert len(await _documents(ledger, "c-de")) == 1


async def test_a_tab_without_a_country_is_invoiced_untaxed_with_that_said(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    await _captured(meter, gateway, ledger, clock, customer="c-none", country="", show_s=0)

    [invoice] = await _documents(ledger, "c-none")

    assert invoice["country"] == ""
    assert invoice["country_evidence"] == invoices.NO_COUNTRY_EVIDENCE
    assert invoice["tax_minor"] == 0
    assert invoice["total_minor"] == invoice["net_minor"] == 551
    assert await ledger.account_balance(invoices.tax_payable("USD")) == 0


async def test_refunds_get_credit_notes_that_give_back_exactly_the_invoiced_tax(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    ref = await _captured(meter, gateway, ledger, clock, customer="c-rf", country="DE")
    refunds = _refunds(ledger, gateway, clock)
    [invoice] = await _documents(ledger, "c-rf")

    # Odd steps (each rounds its tax on its own) until nothing is left.
    for number, amount in enumerate([7, 33, 101, 1, None]):
        await refund_by_support(refunds, f"rf-{number}", ref, amount)

    documents = await _documents(ledger, "c-rf")
    notes = [d for d in documents if d["kind"] == "credit_note"]
    assert len(notes) == 5
    # Their own series, gap-free, each naming the invoice and the refund it documents.
    assert [n["number"] for n in sorted(notes, key=lambda n: n["number"])] == [1, 2, 3, 4, 5]
    assert {n["series"] for n in notes} == {f"CN{at(clock.now_ms()).year}"}
    assert {n["credits_invoice_id"] for n in notes} == {invoice["invoice_id"]}
    assert sorted(n["refund_id"] for n in notes) == [f"rf-{i}" for i in range(5)]
    assert {n["entry_id"] for n in notes} == {f"refund:rf-{i}" for i in range(5)}
    for note in notes:
        _adds_up(note)
        assert note["total_minor"] < 0
    # Refunded in full: the notes credit exactly the invoice, tax included, per line too.
    for field in ("net_minor", "tax_minor", "total_minor"):
        assert sum(n[field] for n in notes) == -invoice[field]
    per_line: dict[str, int] = defaultdict(int)
    for note in notes:
        for line in note["lines"]:
            per_line[line["description"].removeprefix("refund: ")] += line["tax_minor"]
    assert dict(per_line) == {line["description"]: -line["tax_minor"] for line in invoice["lines"]}
    assert await ledger.account_balance(invoices.tax_payable("USD")) == 0


async def test_the_export_of_captures_and_credit_notes_equals_the_ledger(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    since = at(clock.now_ms() - DAY_MS)
    refs = [
        await _captured(meter, gateway, ledger, clock, customer=f"c{n}", country=country)
        for n, country in enumerate(["DE", "IT", "US", "FR"])
    ]
    refunds = _refunds(ledger, gateway, clock)
    for number, (ref, amount) in enumerate(zip(refs, [99, 250, 1, None], strict=True)):
        await refund_by_support(refunds, f"rf-{number}", ref, amount)
    until = at(clock.now_ms() + DAY_MS)

    async with ledger.database.connection() as conn:
        found = await export.issued(conn, since, until)
        booked = await export.ledger_totals(conn, since, until)

    assert sorted(i["kind"] for i in found) == ["credit_note"] * 4 + ["invoice"] * 4
    assert export.totals(found) == booked
    captured = sum(i["total_minor"] for i in found if i["kind"] == "invoice")
    refunded = -sum(i["total_minor"] for i in found if i["kind"] == "credit_note")
    assert booked["USD"].total_minor == captured - refunded
    assert refunded == 99 + 250 + 1 + next(
        i["total_minor"] for i in found if i["customer"] == "c3" and i["kind"] == "invoice"
    )
    assert booked["USD"].tax_minor > 0
    plain = list(csv.DictReader(io.StringIO(export.plain_csv(found))))
    assert sum(int(row["total_minor"]) for row in plain) == booked["USD"].total_minor
    assert sum(int(row["tax_minor"]) for row in plain) == booked["USD"].tax_minor
    assert {row["credits_invoice_id"] for row in plain if row["kind"] == "credit_note"} == {
        i["invoice_id"] for i in found if i["kind"] == "invoice"
    }
    datev = export.datev_csv(found, since, until)
    assert export.datev_totals(datev) == {"USD": booked["USD"].total_minor}
    assert any(row.split(";")[1] == "H" for row in datev.splitlines()[2:])


async def test_receipts_of_an_invoice_and_its_credit_note_are_mailed_once_in_the_language(
    meter: Meter,
    gateway: SandboxGateway,
    ledger: Ledger,
    clock: FakeClock,
    smtp_server: tuple[int, Path],
) -> None:
    port, maildir = smtp_server
    ref = await _captured(
        meter, gateway, ledger, clock, customer="c-mail", country="DE", language="de"
    )
    await _captured(meter, gateway, ledger, clock, customer="c-nomail", country="DE", show_s=0)
    async with ledger.database.connection() as conn:
        await conn.execute("UPDATE holds SET email = '' WHERE customer = 'c-nomail'")
    answer = await _refunds(ledger, gateway, clock).request(
        RefundRequest(
            "rf-mail",
            ref,
            Reason.GOODWILL,
            amount_minor=100,
            override_by="s",
            override_reason="goodwill",
        )
    )
    assert answer.body["status"] == "succeeded", answer.body
    receipts = Receipts(ledger.database, SmtpNotifier(SmtpConfig("127.0.0.1", port)))

    assert await receipts.send_due(clock.now_ms()) == {"sent": 2, "no_address": 1}
    assert await receipts.send_due(clock.now_ms()) == {}  # each at most once

    documents = {d["kind"]: d for d in await _documents(ledger, "c-mail")}
    invoice, note = documents["invoice"], documents["credit_note"]
    mails = {}
    for found in mailbox.Maildir(maildir, create=False):
        mail = email.message_from_bytes(found.as_bytes(), policy=email.policy.default)
        assert str(mail["To"]) == "c-mail@example.com"
        body = mail.get_body(preferencelist=("plain",))
        assert body is not None
        mails[str(mail["Subject"])] = body.get_content()
    assert set(mails) == {
        f"Ihre Rechnung {invoice['invoice_id']}",
        f"Ihre Gutschrift {note['invoice_id']}",
    }
    credit = mails[f"Ihre Gutschrift {note['invoice_id']}"]
    assert f"Korrigiert die Rechnung: {invoice['invoice_id']}" in credit
    assert "Gesamt: -1.00 USD" in credit
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT status, count(*) AS n FROM invoice_notices GROUP BY status"
        )
        assert {row["status"]: row["n"] for row in await cursor.fetchall()} == {
            "sent": 2,
            "no_address": 1,
        }


def test_a_receipt_renders_in_every_language_escaped(ledger: Ledger) -> None:
    receipts = Receipts(ledger.database, LogNotifier())
    document = {
        "invoice_id": "CN2026-0000001",
        "kind": "credit_note",
        "currency": "EUR",
        "credits_invoice_id": "P2026-0000001",
        "net_minor": -82,
        "tax_minor": -18,
        "total_minor": -100,
        "lines": [{"description": "refund: <b>tips</b>", "total_minor": -100}],
    }
    for language in (*CATALOGUE, "xx"):
        message = receipts.render(document, "a@example.com", language)
        assert message.subject.endswith("CN2026-0000001")
        assert "-1.00 EUR" in message.text
        assert "&lt;b&gt;tips&lt;/b&gt;" in message.html
        assert "<b>tips</b>" in message.text
