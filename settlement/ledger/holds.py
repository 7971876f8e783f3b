"""Holds: every authorization a tab was opened or raised with, recorded when it is approved.

The row is idempotent by the gateway idempotency key of the call (``auth:<tab>``,
``increment:<tab>:<cap>``), so a retried open or raise writes nothing new. It keeps what the
processor answered and the payment method the hold was placed on: the card on file that
collection retries after a declined capture, and the first line of a payment's history.
"""

from __future__ import annotations

from dataclasses import dataclass

from metering.outcomes import TabRef
from settlement.ledger.db import Connection
from settlement.ledger.times import at, at_or_none, ms


@dataclass(frozen=True, slots=True)
class HoldCustomer:
    """What the opener of a tab said of the customer: the country (ISO 3166 alpha-2, "" not
    given) and its evidence, for the tax on the tab's invoice; where receipts go, in which
    language."""

    country: str = ""
    country_evidence: str = ""
    email: str = ""
    language: str = "en"


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """One approved authorization (or increment) of a tab's hold."""

    idempotency_key: str
    ref: TabRef
    processor: str
    auth_ref: str
    payment_method: str
    kind: str  # "authorize" or "increment"
    currency: str
    amount_minor: int
    expires_at_ms: int
    recorded_at_ms: int
    processor_ref: str = ""
    customer: HoldCustomer = HoldCustomer()


async def record(conn: Connection, hold: HoldRecord) -> bool:
    """Write ``hold``; False if a hold with its key was recorded before."""
    cursor = await conn.execute(
        """
        INSERT INTO holds (idempotency_key, customer, tab_id, processor, auth_ref,
            payment_method, kind, currency, amount_minor, expires_at, processor_ref,
            recorded_at, country, country_evidence, email, language)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING idempotency_key
        """,
        (
            hold.idempotency_key,
            hold.ref.customer,
            hold.ref.tab_id,
            hold.processor,
            hold.auth_ref,
            hold.payment_method,
            hold.kind,
            hold.currency,
            hold.amount_minor,
            at_or_none(hold.expires_at_ms),
            hold.processor_ref,
            at(hold.recorded_at_ms),
            hold.customer.country,
            hold.customer.country_evidence,
            hold.customer.email,
            hold.customer.language,
        ),
    )
    return await cursor.fetchone() is not None


async def of_tab(conn: Connection, ref: TabRef) -> list[HoldRecord]:
    """The holds of tab ``ref``, oldest first."""
    cursor = await conn.execute(
        """
        SELECT * FROM holds WHERE customer = %s AND tab_id = %s
        ORDER BY recorded_at, idempotency_key
        """,
        (ref.customer, ref.tab_id),
    )
    return [
        HoldRecord(
            idempotency_key=row["idempotency_key"],
            ref=ref,
            processor=row["processor"],
            auth_ref=row["auth_ref"],
            payment_method=row["payment_method"],
            kind=row["kind"],
            currency=row["currency"],
            amount_minor=row["amount_minor"],
            expires_at_ms=ms(row["expires_at"]),
            recorded_at_ms=ms(row["recorded_at"]),
            processor_ref=row["processor_ref"],
        )
        for row in await cursor.fetchall()
    ]
