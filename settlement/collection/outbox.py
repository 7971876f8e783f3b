"""The transactional outbox of the merchant's ``collection.*`` webhooks.

Theory of operation. A case change (paid, a declined attempt, exhausted, expired, written off)
and the webhook that tells the merchant about it are one PostgreSQL transaction:
:func:`record` writes the event into ``collection_outbox`` in the caller's transaction, so the
row exists exactly when the change does. Nothing is queued before the commit, and nothing is
lost after it: a process killed between the commit and the queueing leaves the row unrelayed.

:class:`Relay` moves unrelayed rows, oldest first, into the webhook queue in Redis (the same
queue, signature and delivery as ``tab.*``: :mod:`settlement.webhooks`), then marks them
relayed, in one database transaction that holds the rows (``FOR UPDATE SKIP LOCKED``, so
several relays share the work without waiting on each other). It runs in every settlement
worker's loop (:mod:`settlement.collection.timer`) and right after each commit of the
collector, so the merchant is told at once when nothing fails.

Delivery is at least once: a relay that dies after queueing an event but before its mark
commits queues it again the next time, and the queue refuses an event id it holds or
delivered within its window (``enqueue_webhook.lua``); the event id derives from the event type
and its subject (:func:`settlement.webhooks.event_id`), the same on every relay, and the body's
``created`` is the row's time, so a repeat is the same event, byte for byte. Receivers dedupe
by ``id``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg.types.json import Jsonb

from metering.store import Store
from settlement import webhooks
from settlement.ledger.db import Connection, Database
from settlement.ledger.times import at, ms
from settlement.outcomes import SettleCode
from settlement.webhooks import WebhookConfig

log = logging.getLogger("tipmeter.collection")

#: Rows one relay round moves at most.
RELAY_BATCH_MAX_DEFAULT: Final = 256
#: How long a relayed row is kept (for an operator's look) before it is pruned.
RELAYED_KEEP_MS_DEFAULT: Final = 7 * 24 * 3_600_000
#: Relayed rows one round prunes at most.
PRUNE_BATCH_MAX_DEFAULT: Final = 1_000


async def record(
    conn: Connection,
    event_type: str,
    subject: str,
    data: Mapping[str, Any],
    now: datetime,
) -> None:
    """Write the event into the outbox in the caller's transaction (once per event id: a
    change recorded again writes nothing new)."""
    await conn.execute(
        """
        INSERT INTO collection_outbox (event_id, event_type, subject_id, data, created_at)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        """,
        (webhooks.event_id(event_type, subject), event_type, subject, Jsonb(dict(data)), now),
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """One unrelayed outbox row."""

    event_id: str
    event_type: str
    subject: str
    data: dict[str, Any]
    created_ms: int


async def unrelayed(conn: Connection, limit: int) -> list[Pending]:
    """Unrelayed rows, oldest first, locked for this transaction (rows another relay holds
    are skipped)."""
    cursor = await conn.execute(
        """
        SELECT event_id, event_type, subject_id, data, created_at FROM collection_outbox
        WHERE relayed_at IS NULL
        ORDER BY seq LIMIT %s
        FOR UPDATE SKIP LOCKED
        """,
        (limit,),
    )
    return [
        Pending(
            row["event_id"],
            row["event_type"],
            row["subject_id"],
            dict(row["data"]),
            ms(row["created_at"]),
        )
        for row in await cursor.fetchall()
    ]


async def count_unrelayed(conn: Connection) -> int:
    """How many rows wait for the relay."""
    cursor = await conn.execute(
        "SELECT count(*) AS n FROM collection_outbox WHERE relayed_at IS NULL"
    )
    row = await cursor.fetchone()
    return int(row["n"]) if row is not None else 0


class Relay:
    """Moves committed ``collection.*`` events from the outbox into the webhook queue."""

    def __init__(
        self,
        database: Database,
        store: Store,
        config: WebhookConfig,
        *,
        batch_max: int = RELAY_BATCH_MAX_DEFAULT,
        relayed_keep_ms: int = RELAYED_KEEP_MS_DEFAULT,
    ) -> None:
        self.database = database
        self.store = store
        self.config = config
        self.batch_max = batch_max
        self.relayed_keep_ms = relayed_keep_ms

    async def relay(self, now_ms: int) -> int:
        """Queue the unrelayed events (at most ``batch_max``) and mark them; return how many.

        With webhooks off (no URL) the rows are marked without queueing: there is nowhere to
        send them, as before there was an outbox. A full webhook queue (``busy``) stops the
        round; the rest wait for the next one. Raises ``StoreUnavailable`` or
        ``LedgerUnavailable`` when Redis or the database is gone (nothing is marked then).
        """
        relayed = 0
        async with self.database.connection() as conn, conn.transaction():
            for event in await unrelayed(conn, self.batch_max):
                if self.config.enabled:
                    code = await webhooks.enqueue(
                        self.store,
                        self.config,
                        event.event_type,
                        event.subject,
                        event.data,
                        event.created_ms,
                    )
                    if code is SettleCode.BUSY:
                        break
                await conn.execute(
                    "UPDATE collection_outbox SET relayed_at = %s WHERE event_id = %s",
                    (at(now_ms), event.event_id),
                )
                relayed += 1
        if relayed:
            await self._prune(now_ms)
        return relayed

    async def _prune(self, now_ms: int) -> None:
        async with self.database.connection() as conn:
            await conn.execute(
                """
                DELETE FROM collection_outbox WHERE seq IN (
                    SELECT seq FROM collection_outbox WHERE relayed_at < %s
                    ORDER BY relayed_at LIMIT %s)
                """,
                (at(now_ms - self.relayed_keep_ms), PRUNE_BATCH_MAX_DEFAULT),
            )
