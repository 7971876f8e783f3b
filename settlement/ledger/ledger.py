"""The ledger as the worker, the server and the tools use it: one method per question, each a
connection borrowed from the pool, and each write one transaction."""

from __future__ import annotations

from metering.outcomes import Tab, TabRef
from settlement.ledger import deliveries, earnings, holds, journal, migrate, settlements
from settlement.ledger.db import Database, DatabaseConfig
from settlement.ledger.deliveries import Delivery
from settlement.ledger.earnings import RoomEarnings
from settlement.ledger.errors import LedgerError
from settlement.ledger.holds import HoldRecord
from settlement.ledger.settlements import SettlementFacts
from settlement.scripts import SettlementRecord


class Ledger:
    """The ledger of record over a :class:`~settlement.ledger.db.Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @classmethod
    async def open(cls, config: DatabaseConfig, *, migrate_schema: bool = False) -> Ledger:
        """Connect; with ``migrate_schema``, apply missing migrations first. Raises
        :class:`~settlement.ledger.errors.LedgerError` if the schema is older than this code
        needs (run ``tipmeter migrate``) or newer (this code is too old for the database)."""
        database = await Database.open(config)
        ledger = cls(database)
        try:
            if migrate_schema:
                await ledger.migrate()
            version = await ledger.schema_version()
            if version != migrate.SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger schema is at version {version}, this tipmeter needs "
                    f"{migrate.SCHEMA_VERSION}: run 'tipmeter migrate'"
                    if version < migrate.SCHEMA_VERSION
                    else f"the ledger schema is at version {version}, newer than this "
                    f"tipmeter knows ({migrate.SCHEMA_VERSION}): upgrade tipmeter"
                )
        except BaseException:
            await database.close()
            raise
        return ledger

    async def close(self) -> None:
        """Close the pool."""
        await self.database.close()

    async def migrate(self) -> list[int]:
        """Apply missing migrations (under the migration lock); return the versions applied."""
        async with self.database.connection() as conn:
            return await migrate.migrate(conn)

    async def schema_version(self) -> int:
        """The newest migration applied."""
        async with self.database.connection() as conn:
            return await migrate.schema_version(conn)

    async def record_settlement(self, facts: SettlementFacts) -> bool:
        """Record a settled tab once (False: it was recorded before)."""
        async with self.database.connection() as conn:
            return await settlements.record(conn, facts)

    async def record_hold(self, hold: HoldRecord) -> bool:
        """Record an approved hold or increment once (False: recorded before)."""
        async with self.database.connection() as conn:
            return await holds.record(conn, hold)

    async def record_delivery(self, delivery: Delivery) -> bool:
        """Record a delivered webhook once (False: recorded before)."""
        async with self.database.connection() as conn:
            return await deliveries.record(conn, delivery)

    async def read_tab(self, ref: TabRef) -> tuple[Tab, SettlementRecord] | None:
        """A settled tab and its settlement record, as Redis held them (None: not settled)."""
        async with self.database.connection() as conn:
            return await settlements.read_tab(conn, ref)

    async def find_capture(self, capture_id: str) -> TabRef | None:
        """The tab that capture ``capture_id`` settled, or None."""
        async with self.database.connection() as conn:
            return await settlements.find_capture(conn, capture_id)

    async def holds(self, ref: TabRef) -> list[HoldRecord]:
        """The holds of a tab, oldest first."""
        async with self.database.connection() as conn:
            return await holds.of_tab(conn, ref)

    async def room_earnings(self, room: str) -> list[RoomEarnings]:
        """A model room's settled earnings per currency."""
        async with self.database.connection() as conn:
            return await earnings.of_room(conn, room)

    async def account_balance(self, account: journal.Account) -> int:
        """The balance of one account (debits positive)."""
        async with self.database.connection() as conn:
            return await journal.account_balance(conn, account)
