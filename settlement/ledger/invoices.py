"""Invoices and credit notes: numbered from a gap-free counter per series, with lines and tax.

Theory of operation. Every document is written in the transaction that posts the journal entry
it documents, so a document exists exactly when its money moved, and writing again (a worker
repeating a settlement's record, a refund finished twice) writes nothing: the entry id is
``UNIQUE`` on ``invoices``, and so are the settlement an invoice documents and the refund a credit
note documents (migration 0009).

The number is taken by ``UPDATE invoice_series … RETURNING`` in that transaction: the counter row
stays locked until the transaction ends, so numbers follow commit order, and a transaction that
rolls back gives its number back — no gap, no duplicate (``UNIQUE (series, number)`` besides). A
PostgreSQL ``SEQUENCE`` is not used because it never rolls back. A series is a prefix and the
year of issue: memberships ``S2026``, Post Pay captures ``P2026``, credit notes ``CN2026``.

- **Memberships** (:mod:`settlement.subscriptions.scheduler`): one invoice per paid period.
- **Post Pay captures** (:func:`issue_for_settlement`): one invoice per captured settlement, one
  line per statement line (a model's tips, a show at one rate, a purchase). The amounts a viewer
  agreed to are gross, so the tax is taken out of each line (tax-inclusive) at the rate of the
  customer's country recorded on the hold that opened the tab (with the evidence given then), by
  the one rule (:func:`settlement.ledger.tax.tax_line`). The tax is moved from the platform's
  part to ``tax_payable`` by a ``tab_tax`` entry of the same transaction (the models' shares are
  the meter's, taken on the gross, and are not changed).
- **Credit notes** (:func:`credit_refund`): one per refund of an invoiced settlement, in their own
  series, naming the invoice they credit; one line per invoice line the refund takes from, its
  amounts negative. The tax of a line credited in several refunds is taken cumulatively —
  ``tax(all credited so far) − tax(credited before)`` by the same rule — so a line refunded in
  full gives back exactly its invoice tax, never a cent more. A ``refund_tax`` entry moves that
  tax back from ``tax_payable`` to the platform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from metering.money import format_minor
from settlement.ledger import journal
from settlement.ledger.db import Connection
from settlement.ledger.journal import Account, AccountKind, Entry, EntryCode, Posting
from settlement.ledger.tax import TAX_RATES_BP, rate_bp, tax_line
from settlement.ledger.times import at, ms

#: The default series prefix of memberships' invoices (the year of issue follows).
SERIES_PREFIX_DEFAULT: Final = "S"
#: The series prefix of Post Pay captures' invoices.
TAB_SERIES_PREFIX_DEFAULT: Final = "P"
#: The series prefix of credit notes (refunds).
CREDIT_SERIES_PREFIX_DEFAULT: Final = "CN"
#: The evidence recorded when a tab was opened without a country (taxed at 0).
NO_COUNTRY_EVIDENCE: Final = "none: no country given when the tab was opened"
#: Most invoices one customer listing answers (a bound; page by ``before_ms``).
CUSTOMER_INVOICES_MAX: Final = 200


def series_of(prefix: str, issued_at_ms: int) -> str:
    """The series an invoice issued at ``issued_at_ms`` is numbered in."""
    return f"{prefix}{at(issued_at_ms).year}"


async def next_number(conn: Connection, series: str) -> int:
    """Take the next number of ``series`` (the row stays locked until the transaction ends)."""
    await conn.execute(
        "INSERT INTO invoice_series (series) VALUES (%s) ON CONFLICT (series) DO NOTHING",
        (series,),
    )
    cursor = await conn.execute(
        """
        UPDATE invoice_series SET next_no = next_no + 1 WHERE series = %s
        RETURNING next_no - 1 AS number
        """,
        (series,),
    )
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - the row was inserted just above
        raise RuntimeError(f"invoice series {series} vanished")
    return int(row["number"])


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """What an invoice says, before it has a number."""

    kind: str
    subscription_id: str  # "" when the document is not a membership's
    period_no: int | None
    customer: str
    country: str
    country_evidence: str
    currency: str
    net_minor: int
    tax_minor: int
    total_minor: int
    tax_inclusive: bool
    entry_id: str
    capture_id: str
    lines: list[dict[str, Any]]
    #: The Post Pay settlement documented (an invoice) or credited (a credit note).
    settlement_id: str = ""
    #: A credit note's refund, and the invoice it credits.
    refund_id: str = ""
    credits_invoice_id: str = ""


async def issue(
    conn: Connection,
    series: str,
    facts: InvoiceFacts,
    now_ms: int,
    *,
    issued_at: datetime | None = None,
) -> str:
    """Number and write an invoice and its lines in the caller's transaction; its id. It is
    issued at ``now_ms`` (or exactly at ``issued_at``: its entry's posting time)."""
    number = await next_number(conn, series)
    invoice_id = f"{series}-{number:07d}"
    await conn.execute(
        """
        INSERT INTO invoices (invoice_id, series, number, kind, subscription_id, period_no,
            customer, country, country_evidence, currency, net_minor, tax_minor, total_minor,
            tax_inclusive, entry_id, capture_id, issued_at, settlement_id, refund_id,
            credits_invoice_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            invoice_id,
            series,
            number,
            facts.kind,
            facts.subscription_id or None,
            facts.period_no,
            facts.customer,
            facts.country,
            facts.country_evidence,
            facts.currency,
            facts.net_minor,
            facts.tax_minor,
            facts.total_minor,
            facts.tax_inclusive,
            facts.entry_id,
            facts.capture_id,
            issued_at if issued_at is not None else at(now_ms),
            facts.settlement_id or None,
            facts.refund_id or None,
            facts.credits_invoice_id or None,
        ),
    )
    for line in facts.lines:
        await conn.execute(
            """
            INSERT INTO invoice_lines (invoice_id, line_no, description, net_minor, tax_minor,
                                       total_minor, tax_rate_bp, line_key)
            VALUES (%(invoice_id)s, %(line_no)s, %(description)s, %(net_minor)s, %(tax_minor)s,
                    %(total_minor)s, %(tax_rate_bp)s, %(line_key)s)
            """,
            {"line_key": "", **line, "invoice_id": invoice_id},
        )
    return invoice_id


async def of_subscription(conn: Connection, subscription_id: str) -> list[dict[str, Any]]:
    """A subscription's invoices with their lines, oldest first."""
    cursor = await conn.execute(
        "SELECT * FROM invoices WHERE subscription_id = %s ORDER BY issued_at, number",
        (subscription_id,),
    )
    found = [invoice_json(row) for row in await cursor.fetchall()]
    for invoice in found:
        invoice["lines"] = await lines_of(conn, invoice["invoice_id"])
    return found


def invoice_json(row: dict[str, Any]) -> dict[str, Any]:
    """An invoice row as the API shows it (without its lines)."""
    return {
        "invoice_id": row["invoice_id"],
        "series": row["series"],
        "number": row["number"],
        "kind": row["kind"],
        "subscription_id": row["subscription_id"],
        "period_no": row["period_no"],
        "customer": row["customer"],
        "country": row["country"].strip(),
        "country_evidence": row["country_evidence"],
        "currency": row["currency"].strip(),
        "net_minor": row["net_minor"],
        "tax_minor": row["tax_minor"],
        "total_minor": row["total_minor"],
        "tax_inclusive": row["tax_inclusive"],
        "entry_id": row["entry_id"],
        "capture_id": row["capture_id"],
        "issued_at_ms": ms(row["issued_at"]),
        "settlement_id": row["settlement_id"] or "",
        "refund_id": row["refund_id"] or "",
        "credits_invoice_id": row["credits_invoice_id"] or "",
    }


async def lines_of(conn: Connection, invoice_id: str) -> list[dict[str, Any]]:
    """An invoice's lines, in order."""
    cursor = await conn.execute(
        """
        SELECT line_no, description, net_minor, tax_minor, total_minor, tax_rate_bp
        FROM invoice_lines WHERE invoice_id = %s ORDER BY line_no
        """,
        (invoice_id,),
    )
    return [dict(row) for row in await cursor.fetchall()]


async def of_customer(
    conn: Connection, customer: str, *, before_ms: int = 0, limit: int = CUSTOMER_INVOICES_MAX
) -> list[dict[str, Any]]:
    """A customer's invoices and credit notes with their lines, newest first (at most
    ``limit``, issued before ``before_ms`` when it is given)."""
    cursor = await conn.execute(
        """
        SELECT * FROM invoices WHERE customer = %s AND (%s::timestamptz IS NULL OR issued_at < %s)
        ORDER BY issued_at DESC, series DESC, number DESC LIMIT %s
        """,
        (
            customer,
            at(before_ms) if before_ms else None,
            at(before_ms) if before_ms else None,
            max(1, min(limit, CUSTOMER_INVOICES_MAX)),
        ),
    )
    found = [invoice_json(row) for row in await cursor.fetchall()]
    for invoice in found:
        invoice["lines"] = await lines_of(conn, invoice["invoice_id"])
    return found


async def read(conn: Connection, invoice_id: str) -> dict[str, Any] | None:
    """One invoice or credit note with its lines, or None."""
    cursor = await conn.execute("SELECT * FROM invoices WHERE invoice_id = %s", (invoice_id,))
    row = await cursor.fetchone()
    if row is None:
        return None
    invoice = invoice_json(row)
    invoice["lines"] = await lines_of(conn, invoice_id)
    return invoice


# -- Post Pay captures -------------------------------------------------------------------------


def tax_payable(currency: str) -> Account:
    """Tax collected for the tax authorities."""
    return Account(AccountKind.TAX_PAYABLE, currency)


def line_key(kind: str, room: str, rate_per_minute_minor: int = 0, purchase_id: str = "") -> str:
    """Which statement line an amount belongs to: ``tip:<room>``, ``session:<room>:<rate>`` or
    ``purchase:<purchase id>`` (how :func:`settlement.statements.itemize` groups lines)."""
    if kind == "purchase":
        return f"purchase:{purchase_id}"
    if kind == "session":
        return f"session:{room}:{rate_per_minute_minor}"
    return f"tip:{room}"


@dataclass(frozen=True, slots=True)
class TabLine:
    """One statement line of a captured tab, as its invoice shows it."""

    key: str
    description: str
    amount_minor: int


def tab_line_description(
    kind: str,
    room: str,
    currency: str,
    *,
    count: int = 0,
    seconds: int = 0,
    rate_per_minute_minor: int = 0,
    item_name: str = "",
) -> str:
    """What an invoice line of a tab says (English; the notice templates translate the rest)."""
    if kind == "session":
        rate = format_minor(rate_per_minute_minor, currency)
        return f"show in room {room}: {seconds} s at {rate}/min"
    if kind == "purchase":
        return f"{item_name or 'purchase'} in room {room}"
    return f"tips in room {room} ({count})"


@dataclass(frozen=True, slots=True)
class TabInvoice:
    """What a captured tab's invoice documents (everything but the number)."""

    settlement_id: str
    customer: str
    currency: str
    capture_id: str
    entry_id: str  # the tab_capture entry: what the processor owes for it
    issued_at_ms: int
    lines: tuple[TabLine, ...]


async def tab_country(conn: Connection, customer: str, tab_id: str) -> tuple[str, str, str, str]:
    """The country, its evidence, the e-mail address and the language recorded on the hold that
    opened the tab (``""`` country when none was given)."""
    cursor = await conn.execute(
        """
        SELECT country, country_evidence, email, language FROM holds
        WHERE customer = %s AND tab_id = %s AND kind = 'authorize'
        ORDER BY recorded_at LIMIT 1
        """,
        (customer, tab_id),
    )
    row = await cursor.fetchone()
    if row is None:
        return "", NO_COUNTRY_EVIDENCE, "", "en"
    evidence = row["country_evidence"] or (NO_COUNTRY_EVIDENCE if not row["country"] else "")
    return row["country"], evidence, row["email"], row["language"]


async def issue_for_settlement(
    conn: Connection,
    tab: TabInvoice,
    tab_id: str,
    *,
    series_prefix: str = TAB_SERIES_PREFIX_DEFAULT,
    rates: Mapping[str, int] = TAX_RATES_BP,
) -> str:
    """Write a captured tab's invoice and its ``tab_tax`` entry in the caller's transaction
    (the one recording the settlement); the invoice id. Writes nothing if the settlement has an
    invoice already (its id is answered).

    Invariant: the lines' totals sum to the capture, and ``net + tax == total`` per line; the
    tax entry moves exactly the invoice's tax.
    """
    cursor = await conn.execute(
        "SELECT invoice_id FROM invoices WHERE settlement_id = %s AND kind = 'invoice'",
        (tab.settlement_id,),
    )
    row = await cursor.fetchone()
    if row is not None:
        return str(row["invoice_id"])
    country, evidence, _email, _language = await tab_country(conn, tab.customer, tab_id)
    rate = rate_bp(country, rates) if country else 0
    lines: list[dict[str, Any]] = []
    for number, line in enumerate((t for t in tab.lines if t.amount_minor), start=1):
        taxed = tax_line(line.amount_minor, rate, inclusive=True)
        lines.append(
            {
                "line_no": number,
                "description": line.description,
                "net_minor": taxed.net_minor,
                "tax_minor": taxed.tax_minor,
                "total_minor": taxed.total_minor,
                "tax_rate_bp": rate,
                "line_key": line.key,
            }
        )
    tax = sum(line["tax_minor"] for line in lines)
    total = sum(line["total_minor"] for line in lines)
    if tax:
        await journal.post(
            conn,
            [
                Entry(
                    f"tab_tax:{tab.settlement_id}",
                    EntryCode.TAB_TAX,
                    tab.currency,
                    (
                        Posting(journal.platform_revenue(tab.currency), tax),
                        Posting(tax_payable(tab.currency), -tax),
                    ),
                    at(tab.issued_at_ms),
                    tab.settlement_id,
                ),
            ],
        )
    facts = InvoiceFacts(
        kind="invoice",
        subscription_id="",
        period_no=None,
        customer=tab.customer,
        country=country,
        country_evidence=evidence,
        currency=tab.currency,
        net_minor=total - tax,
        tax_minor=tax,
        total_minor=total,
        tax_inclusive=True,
        entry_id=tab.entry_id,
        capture_id=tab.capture_id,
        lines=lines,
        settlement_id=tab.settlement_id,
    )
    series = series_of(series_prefix, tab.issued_at_ms)
    invoice_id = await issue(conn, series, facts, tab.issued_at_ms)
    await receipt_due(conn, invoice_id, at(tab.issued_at_ms))
    return invoice_id


# -- credit notes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credited:
    """What a refund gives back of one settlement line (its id and amount)."""

    line_id: str
    amount_minor: int


async def credit_refund(
    conn: Connection,
    *,
    refund_id: str,
    settlement_id: str,
    entry_id: str,
    parts: Sequence[Credited],
    posted_at: datetime,
    series_prefix: str = CREDIT_SERIES_PREFIX_DEFAULT,
) -> str:
    """Write the credit note of a refund and its ``refund_tax`` entry in the caller's
    transaction (the one posting the refund's entry ``entry_id``); the credit note's id, or
    ``""`` when the settlement has no invoice (captured before invoices were written). Writes
    nothing if the refund has its credit note already.

    The invoice's row is locked first (``FOR UPDATE``; the row is never changed), so the credit
    notes of one invoice are computed one after the other and the cumulative tax rule (module
    docstring) sees every earlier one.
    """
    cursor = await conn.execute(
        "SELECT invoice_id FROM invoices WHERE refund_id = %s", (refund_id,)
    )
    done = await cursor.fetchone()
    if done is not None:
        return str(done["invoice_id"])
    cursor = await conn.execute(
        """
        SELECT * FROM invoices WHERE settlement_id = %s AND kind = 'invoice' FOR UPDATE
        """,
        (settlement_id,),
    )
    invoice = await cursor.fetchone()
    if invoice is None:
        return ""
    invoice_id = invoice["invoice_id"]
    currency = invoice["currency"].strip()
    cursor = await conn.execute(
        """
        SELECT line_id, kind, room, rate_per_minute_minor FROM settlement_lines
        WHERE settlement_id = %s AND line_id = ANY(%s)
        """,
        (settlement_id, [p.line_id for p in parts]),
    )
    keys = {}
    for row in await cursor.fetchall():
        purchase = row["line_id"].startswith("buy:")
        keys[row["line_id"]] = line_key(
            "purchase" if purchase else row["kind"],
            row["room"],
            row["rate_per_minute_minor"],
            row["line_id"].removeprefix("buy:"),
        )
    amounts: dict[str, int] = {}
    for part in parts:
        key = keys[part.line_id]
        amounts[key] = amounts.get(key, 0) + part.amount_minor
    cursor = await conn.execute(
        """
        SELECT line_no, description, tax_rate_bp, line_key FROM invoice_lines
        WHERE invoice_id = %s ORDER BY line_no
        """,
        (invoice_id,),
    )
    invoiced = {row["line_key"]: row for row in await cursor.fetchall()}
    cursor = await conn.execute(
        """
        SELECT l.line_key, -sum(l.total_minor) AS credited, -sum(l.tax_minor) AS tax
        FROM invoice_lines l JOIN invoices i USING (invoice_id)
        WHERE i.credits_invoice_id = %s GROUP BY l.line_key
        """,
        (invoice_id,),
    )
    before = {row["line_key"]: row for row in await cursor.fetchall()}
    lines: list[dict[str, Any]] = []
    for key, amount in sorted(amounts.items(), key=lambda ka: invoiced[ka[0]]["line_no"]):
        if not amount:
            continue
        source = invoiced[key]
        rate = source["tax_rate_bp"]
        earlier = before.get(key)
        credited_before = int(earlier["credited"]) if earlier is not None else 0
        tax_before = int(earlier["tax"]) if earlier is not None else 0
        tax_now = tax_line(credited_before + amount, rate, inclusive=True).tax_minor
        tax = tax_now - tax_before
        lines.append(
            {
                "line_no": len(lines) + 1,
                "description": f"refund: {source['description']}",
                "net_minor": -(amount - tax),
                "tax_minor": -tax,
                "total_minor": -amount,
                "tax_rate_bp": rate,
                "line_key": key,
            }
        )
    if not lines:
        return ""
    tax = -sum(line["tax_minor"] for line in lines)
    total = -sum(line["total_minor"] for line in lines)
    if tax:
        await journal.post(
            conn,
            [
                Entry(
                    f"refund_tax:{refund_id}",
                    EntryCode.REFUND_TAX,
                    currency,
                    (
                        Posting(tax_payable(currency), tax),
                        Posting(journal.platform_revenue(currency), -tax),
                    ),
                    posted_at,
                    settlement_id,
                )
            ],
        )
    facts = InvoiceFacts(
        kind="credit_note",
        subscription_id="",
        period_no=None,
        customer=invoice["customer"],
        country=invoice["country"].strip(),
        country_evidence=invoice["country_evidence"],
        currency=currency,
        net_minor=-(total - tax),
        tax_minor=-tax,
        total_minor=-total,
        tax_inclusive=True,
        entry_id=entry_id,
        capture_id=invoice["capture_id"],
        lines=lines,
        settlement_id=settlement_id,
        refund_id=refund_id,
        credits_invoice_id=invoice_id,
    )
    issued_at_ms = ms(posted_at)
    note_id = await issue(
        conn, series_of(series_prefix, issued_at_ms), facts, issued_at_ms, issued_at=posted_at
    )
    await receipt_due(conn, note_id, posted_at)
    return note_id


async def receipt_due(conn: Connection, invoice_id: str, created_at: datetime) -> None:
    """Queue the receipt of a Post Pay invoice or credit note, in the transaction that writes
    it (an outbox row: :mod:`settlement.receipts` sends it once the transaction committed)."""
    await conn.execute(
        """
        INSERT INTO invoice_notices (invoice_id, created_at) VALUES (%s, %s)
        ON CONFLICT (invoice_id) DO NOTHING
        """,
        (invoice_id, created_at),
    )
