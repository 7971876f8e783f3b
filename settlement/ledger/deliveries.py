"""Webhook deliveries: every event the cam site acknowledged, kept as part of the record."""

from __future__ import annotations

from dataclasses import dataclass

from settlement.ledger.db import Connection
from settlement.ledger.times import at, ms


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivered webhook event."""

    event_id: str
    event_type: str
    subject_id: str
    attempts: int
    delivered_at_ms: int


async def record(conn: Connection, delivery: Delivery) -> bool:
    """Write ``delivery``; False if that event was recorded as delivered before."""
    cursor = await conn.execute(
        """
        INSERT INTO webhook_deliveries (event_id, event_type, subject_id, attempts, delivered_at)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
        """,
        (
            delivery.event_id,
            delivery.event_type,
            delivery.subject_id,
            delivery.attempts,
            at(delivery.delivered_at_ms),
        ),
    )
    return await cursor.fetchone() is not None


async def of_subject(conn: Connection, subject_id: str) -> list[Delivery]:
    """The deliveries about ``subject_id`` (a settlement id), oldest first."""
    cursor = await conn.execute(
        "SELECT * FROM webhook_deliveries WHERE subject_id = %s ORDER BY delivered_at",
        (subject_id,),
    )
    return [
        Delivery(
            row["event_id"],
            row["event_type"],
            row["subject_id"],
            row["attempts"],
            ms(row["delivered_at"]),
        )
        for row in await cursor.fetchall()
    ]
