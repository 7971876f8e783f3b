"""Invoices exported for accountants: a DATEV-style booking batch and a plain CSV.

Both read the documents issued in a window ``[since, until)`` (with their lines): memberships'
invoices, Post Pay captures' invoices and refunds' credit notes (negative). Both are checked
against the ledger by :func:`ledger_totals`: for every currency, the export's totals equal the
journal's documented entries of the same window (each entry and its document are written in one
transaction, at one instant).

**Plain CSV**: one row per invoice line, amounts as integer minor units (no rounding anywhere):
``invoice_id, series, number, kind, issued_at, customer, country, country_evidence, currency,
line_no, description, net_minor, tax_minor, total_minor, tax_rate_bp, tax_inclusive,
subscription_id, period_no, capture_id, entry_id, settlement_id, refund_id,
credits_invoice_id``.

**DATEV-style booking batch** (``Buchungsstapel``): semicolon-separated, decimal comma, one
booking per invoice line, the gross amount of the line. Filled columns and where they come from:

==============================  =============================================================
column                          from
==============================  =============================================================
``Umsatz``                      the line's total, absolute, decimal comma (``12,34``)
``Soll/Haben-Kennzeichen``      ``S`` for a charge line, ``H`` for a credit line (negative)
``WKZ Umsatz``                  the invoice's currency
``Konto``                       the debtor: :attr:`DatevAccounts.receivable` (processor
                                clearing, default 1360 "Geldtransit")
``Gegenkonto (ohne BU-Schlüssel)``  revenue by tax: :attr:`DatevAccounts.revenue_taxed` (8400)
                                when the line is taxed, :attr:`DatevAccounts.revenue_untaxed`
                                (8200) at 0 %
``BU-Schlüssel``                empty (the revenue accounts carry their tax automatically)
``Belegdatum``                  the invoice's issue day, ``DDMM``
``Belegfeld 1``                 the invoice id (series and number)
``Buchungstext``                the line's description (at most 60 characters)
``EU-Land u. UStID``            the customer's country
``EU-Steuersatz``               the line's tax rate in percent, decimal comma (``19,00``)
==============================  =============================================================

The first line says what the file is (format, window, currency count); DATEV's full 116-column
header record is not written — the columns above are what an accountant's import maps.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from settlement.ledger.db import Connection
from settlement.ledger.journal import EntryCode
from settlement.ledger.times import at
from settlement.subscriptions import invoices

#: Most invoices one export reads (a bound; export a shorter window past it).
EXPORT_INVOICES_MAX: Final = 1_000_000
PLAIN_COLUMNS: Final = (
    "invoice_id",
    "series",
    "number",
    "kind",
    "issued_at",
    "customer",
    "country",
    "country_evidence",
    "currency",
    "line_no",
    "description",
    "net_minor",
    "tax_minor",
    "total_minor",
    "tax_rate_bp",
    "tax_inclusive",
    "subscription_id",
    "period_no",
    "capture_id",
    "entry_id",
    "settlement_id",
    "refund_id",
    "credits_invoice_id",
)
DATEV_COLUMNS: Final = (
    "Umsatz (ohne Soll/Haben-Kz)",
    "Soll/Haben-Kennzeichen",
    "WKZ Umsatz",
    "Konto",
    "Gegenkonto (ohne BU-Schlüssel)",
    "BU-Schlüssel",
    "Belegdatum",
    "Belegfeld 1",
    "Buchungstext",
    "EU-Land u. UStID",
    "EU-Steuersatz",
)


@dataclass(frozen=True, slots=True)
class DatevAccounts:
    """The chart-of-accounts numbers the booking batch uses (SKR03 defaults)."""

    receivable: str = "1360"
    revenue_taxed: str = "8400"
    revenue_untaxed: str = "8200"


@dataclass(frozen=True, slots=True)
class Totals:
    """Net, tax and total of one currency."""

    net_minor: int = 0
    tax_minor: int = 0
    total_minor: int = 0


async def issued(conn: Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The invoices issued in ``[since, until)``, in number order per series, with lines."""
    cursor = await conn.execute(
        """
        SELECT invoice_id FROM invoices WHERE issued_at >= %s AND issued_at < %s
        ORDER BY series, number LIMIT %s
        """,
        (since, until, EXPORT_INVOICES_MAX),
    )
    ids = [row["invoice_id"] for row in await cursor.fetchall()]
    found = []
    for invoice_id in ids:
        cursor = await conn.execute("SELECT * FROM invoices WHERE invoice_id = %s", (invoice_id,))
        row = await cursor.fetchone()
        if row is None:  # pragma: no cover - invoices are never deleted
            continue
        invoice = invoices.invoice_json(row)
        invoice["lines"] = await invoices.lines_of(conn, invoice_id)
        found.append(invoice)
    return found


def totals(found: list[dict[str, Any]]) -> dict[str, Totals]:
    """The invoices' net, tax and total per currency."""
    sums: dict[str, Totals] = {}
    for invoice in found:
        t = sums.get(invoice["currency"], Totals())
        sums[invoice["currency"]] = Totals(
            t.net_minor + invoice["net_minor"],
            t.tax_minor + invoice["tax_minor"],
            t.total_minor + invoice["total_minor"],
        )
    return sums


#: The journal entries that invoices and credit notes document: memberships' charges; Post
#: Pay captures (the charge, the capture, the tax moved out of it); a tab's debt collected
#: after its capture was declined (the collection's capture and earnings, the tax); refunds
#: and their tax.
DOCUMENTED_ENTRY_CODES: Final = (
    EntryCode.SUBSCRIPTION_CHARGE,
    EntryCode.TAB_CHARGE,
    EntryCode.TAB_CAPTURE,
    EntryCode.TAB_TAX,
    EntryCode.COLLECTION_CAPTURE,
    EntryCode.COLLECTION_EARNINGS,
    EntryCode.REFUND,
    EntryCode.REFUND_TAX,
)

#: Of those, the entries that document only a tab's settlement: an uploaded debt's (no
#: settlement) has no invoice.
_SETTLEMENT_ONLY_CODES: Final = (EntryCode.COLLECTION_CAPTURE, EntryCode.COLLECTION_EARNINGS)


async def ledger_totals(conn: Connection, since: datetime, until: datetime) -> dict[str, Totals]:
    """The journal's documented entries posted in ``[since, until)``, per currency: total
    (what the processors owe: positive for charges, negative for refunds), tax (tax payable)
    and net (the models' and platform's parts, refunds taken off).

    A Post Pay entry counts when its settlement has an invoice: a tab captured before invoices
    were written (migration 0009), or an uploaded debt paid through collection, has none, and
    neither do its refunds.
    """
    cursor = await conn.execute(
        """
        SELECT p.currency,
               coalesce(sum(p.amount_minor) FILTER (WHERE a.kind = 'processor_clearing'), 0)
                   AS total,
               -coalesce(sum(p.amount_minor) FILTER (WHERE a.kind = 'tax_payable'), 0) AS tax,
               -coalesce(sum(p.amount_minor)
                   FILTER (WHERE a.kind IN ('platform_revenue', 'model_payable', 'refunds')), 0)
                   AS net
        FROM postings p
        JOIN journal_entries e USING (entry_id)
        JOIN accounts a ON a.account_id = p.account_id
        WHERE e.code = ANY(%s) AND e.posted_at >= %s AND e.posted_at < %s
          AND ((e.settlement_id IS NULL AND e.code <> ALL(%s)) OR EXISTS (
                SELECT 1 FROM invoices i
                WHERE i.settlement_id = e.settlement_id AND i.kind = 'invoice'))
        GROUP BY p.currency
        """,
        (
            [int(code) for code in DOCUMENTED_ENTRY_CODES],
            since,
            until,
            [int(code) for code in _SETTLEMENT_ONLY_CODES],
        ),
    )
    return {
        row["currency"].strip(): Totals(int(row["net"]), int(row["tax"]), int(row["total"]))
        for row in await cursor.fetchall()
    }


def plain_csv(found: list[dict[str, Any]]) -> str:
    """The plain CSV (see the module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PLAIN_COLUMNS)
    for invoice in found:
        for line in invoice["lines"]:
            writer.writerow(
                [
                    invoice["invoice_id"],
                    invoice["series"],
                    invoice["number"],
                    invoice["kind"],
                    at(invoice["issued_at_ms"]).isoformat(),
                    invoice["customer"],
                    invoice["country"],
                    invoice["country_evidence"],
                    invoice["currency"],
                    line["line_no"],
                    line["description"],
                    line["net_minor"],
                    line["tax_minor"],
                    line["total_minor"],
                    line["tax_rate_bp"],
                    "true" if invoice["tax_inclusive"] else "false",
                    invoice["subscription_id"] or "",
                    invoice["period_no"] if invoice["period_no"] is not None else "",
                    invoice["capture_id"],
                    invoice["entry_id"],
                    invoice["settlement_id"],
                    invoice["refund_id"],
                    invoice["credits_invoice_id"],
                ]
            )
    return out.getvalue()


def decimal_comma(amount_minor: int, exponent: int = 2) -> str:
    """A non-negative amount of minor units as DATEV writes it: ``1234`` → ``12,34``."""
    if exponent == 0:
        return str(amount_minor)
    whole, part = divmod(amount_minor, 10**exponent)
    return f"{whole},{part:0{exponent}d}"


def datev_csv(
    found: list[dict[str, Any]],
    since: datetime,
    until: datetime,
    accounts: DatevAccounts | None = None,
) -> str:
    """The DATEV-style booking batch (see the module docstring)."""
    from metering.money import CURRENCY_EXPONENTS

    chart = accounts if accounts is not None else DatevAccounts()
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    currencies = sorted({invoice["currency"] for invoice in found})
    writer.writerow(
        [
            "tipmeter-Buchungsstapel",
            f"{since.date().isoformat()}..{until.date().isoformat()}",
            f"{len(found)} Rechnungen",
            ",".join(currencies),
        ]
    )
    writer.writerow(DATEV_COLUMNS)
    for invoice in found:
        issued_at = at(invoice["issued_at_ms"])
        exponent = CURRENCY_EXPONENTS.get(invoice["currency"], 2)
        for line in invoice["lines"]:
            total = line["total_minor"]
            if total == 0:
                continue
            writer.writerow(
                [
                    decimal_comma(abs(total), exponent),
                    "S" if total > 0 else "H",
                    invoice["currency"],
                    chart.receivable,
                    chart.revenue_taxed if line["tax_rate_bp"] else chart.revenue_untaxed,
                    "",
                    issued_at.strftime("%d%m"),
                    invoice["invoice_id"],
                    line["description"][:60],
                    invoice["country"],
                    decimal_comma(line["tax_rate_bp"]),
                ]
            )
    return out.getvalue()


def datev_totals(text: str) -> dict[str, int]:
    """Read a booking batch back: the signed total per currency in minor units (the test
    compares it with the ledger; a DATEV import would book the same)."""
    from metering.money import CURRENCY_EXPONENTS

    rows = list(csv.reader(io.StringIO(text), delimiter=";"))[2:]
    sums: dict[str, int] = {}
    for row in rows:
        amount, side, currency = row[0], row[1], row[2]
        exponent = CURRENCY_EXPONENTS.get(currency, 2)
        whole, _, part = amount.partition(",")
        minor = int(whole) * 10**exponent + (int(part) if part else 0)
        sums[currency] = sums.get(currency, 0) + (minor if side == "S" else -minor)
    return sums
