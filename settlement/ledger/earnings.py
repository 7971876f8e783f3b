"""Model earnings from the ledger: what each room earned from settled tabs, per currency."""

from __future__ import annotations

from dataclasses import dataclass

from settlement.ledger.db import Connection


@dataclass(frozen=True, slots=True)
class RoomEarnings:
    """A room's settled earnings in one currency.

    ``share_minor`` is the model's part of captured tabs (what the platform owes her);
    ``gross_minor`` what those tabs paid the room; ``pending_minor`` her part of tabs whose
    capture was declined or expired (waiting for collection).
    """

    currency: str
    gross_minor: int
    share_minor: int
    pending_minor: int
    settlements: int


async def of_room(conn: Connection, room: str) -> list[RoomEarnings]:
    """``room``'s settled earnings, one row per currency (sorted)."""
    cursor = await conn.execute(
        """
        SELECT currency,
               coalesce(sum(gross_minor) FILTER (WHERE collected), 0) AS gross,
               coalesce(sum(share_minor) FILTER (WHERE collected), 0) AS share,
               coalesce(sum(share_minor) FILTER (WHERE NOT collected), 0) AS pending,
               count(*) FILTER (WHERE collected) AS settlements
        FROM model_earnings WHERE room = %s
        GROUP BY currency ORDER BY currency
        """,
        (room,),
    )
    return [
        RoomEarnings(
            currency=row["currency"],
            gross_minor=int(row["gross"]),
            share_minor=int(row["share"]),
            pending_minor=int(row["pending"]),
            settlements=int(row["settlements"]),
        )
        for row in await cursor.fetchall()
    ]
