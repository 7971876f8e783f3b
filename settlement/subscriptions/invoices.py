"""Invoices: numbered from a gap-free counter per series, with their lines and tax.

The number is taken by ``UPDATE invoice_series … RETURNING`` in the transaction that writes the
invoice (and the charge's journal entry): the counter row stays locked until that transaction
ends, so numbers follow commit order, and a transaction that rolls back gives its number back —
no gap, no duplicate (``UNIQUE (series, number)`` besides). A PostgreSQL ``SEQUENCE`` is not
used because it never rolls back. The series is the prefix and the year of issue (``S2026``):
accountants number per year.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from settlement.ledger.db import Connection
from settlement.ledger.times import at, ms

#: The default series prefix (the year of issue follows).
SERIES_PREFIX_DEFAULT = "S"


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
    subscription_id: str
    period_no: int
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


async def issue(conn: Connection, series: str, facts: InvoiceFacts, now_ms: int) -> str:
    """Number and write an invoice and its lines in the caller's transaction; its id."""
    number = await next_number(conn, series)
    invoice_id = f"{series}-{number:07d}"
    await conn.execute(
        """
        INSERT INTO invoices (invoice_id, series, number, kind, subscription_id, period_no,
            customer, country, country_evidence, currency, net_minor, tax_minor, total_minor,
            tax_inclusive, entry_id, capture_id, issued_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            invoice_id,
            series,
            number,
            facts.kind,
            facts.subscription_id,
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
            at(now_ms),
        ),
    )
    for line in facts.lines:
        await conn.execute(
            """
            INSERT INTO invoice_lines (invoice_id, line_no, description, net_minor, tax_minor,
                                       total_minor, tax_rate_bp)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            """,
            (
                invoice_id,
                line["line_no"],
                line["description"],
                line["net_minor"],
                line["tax_minor"],
                line["total_minor"],
                line["tax_rate_bp"],
            ),
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
