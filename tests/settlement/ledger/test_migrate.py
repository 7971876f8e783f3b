"""Migrations: numbered, applied once, in order, safely from several processes at once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from settlement.ledger import migrate
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.errors import LedgerError
from settlement.ledger.ledger import Ledger
from tests.support import postgres


def _empty_database() -> str:
    server = postgres.shared_server()
    return server.create_database(f"empty_{uuid.uuid4().hex}")


async def test_several_processes_migrating_at_once_apply_each_migration_once() -> None:
    url = _empty_database()

    async def one() -> list[int]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await migrate.migrate(conn)

    applied = await asyncio.gather(*(one() for _ in range(6)))
    # Exactly one of them applied everything; the others waited on the lock, then found none.
    assert sorted(len(a) for a in applied) == [0] * 5 + [len(migrate.migrations())]
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        cursor = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        versions = [row["version"] for row in await cursor.fetchall()]
        assert versions == [m.version for m in migrate.migrations()]
        assert await migrate.schema_version(conn) == migrate.SCHEMA_VERSION


async def test_a_schema_behind_the_code_is_refused_with_what_to_do() -> None:
    url = _empty_database()
    with pytest.raises(LedgerError, match="run 'tipmeter migrate'"):
        await Ledger.open(DatabaseConfig(url=url))
    ledger = await Ledger.open(DatabaseConfig(url=url), migrate_schema=True)
    try:
        assert await ledger.schema_version() == migrate.SCHEMA_VERSION
    finally:
        await ledger.close()


def test_migration_files_are_numbered_in_order_each_number_once(tmp_path: Path) -> None:
    versions = [m.version for m in migrate.migrations()]
    assert versions == sorted(set(versions))
    assert versions[-1] == migrate.SCHEMA_VERSION
    # A number handed out but not used leaves a gap: the others still apply in order.
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "0003_third.sql").write_text("SELECT 1;")
    assert [m.version for m in migrate.migrations(tmp_path)] == [1, 3]
    (tmp_path / "0003_again.sql").write_text("SELECT 1;")
    with pytest.raises(LedgerError, match="migration 0003 exists twice"):
        migrate.migrations(tmp_path)
    (tmp_path / "0003_again.sql").unlink()
    (tmp_path / "4_bad.sql").write_text("SELECT 1;")
    with pytest.raises(LedgerError, match=r"not named NNNN_name\.sql"):
        migrate.migrations(tmp_path)


async def test_migration_0010_turns_purchases_recorded_as_tips_into_purchases() -> None:
    """Before 0010 a catalog purchase was recorded as a tip (line id ``buy:…``); the
    migration makes it a purchase line (item unknown) and leaves tips and sessions as they
    were, although the lines are append-only."""
    url = _empty_database()
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        async with conn.transaction():
            await conn.execute(migrate._CREATE_VERSIONS)
            for old in (m for m in migrate.migrations() if m.version < 10):
                await conn.execute(old.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (old.version, old.name),
                )
        async with conn.transaction():
            await conn.execute(
                """
                INSERT INTO settlements (settlement_id, customer, tab_id, currency, processor,
                    auth_ref, outcome, state, cap_minor, accrued_minor, captured_minor,
                    platform_minor, capture_id, outcome_at)
                VALUES ('c1/t1', 'c1', 't1', 'USD', 'sandbox', 'a1', 'captured', 'settled',
                    1000, 400, 400, 400, 'cap1', now())
                """
            )
            await conn.execute(
                """
                INSERT INTO settlement_lines (settlement_id, line_id, seq, kind, room, at,
                    amount_minor, payout_bp, share_minor)
                VALUES ('c1/t1', 'tip:x', 0, 'tip', 'r1', now(), 100, 0, 0),
                       ('c1/t1', 'buy:p1', 1, 'tip', 'r1', now(), 300, 0, 0)
                """
            )
            await conn.execute(
                "INSERT INTO model_earnings (settlement_id, room, currency, gross_minor,"
                " share_minor, collected, outcome_at) VALUES ('c1/t1', 'r1', 'USD', 400, 0,"
                " true, now())"
            )
        assert 10 in await migrate.migrate(conn)
        cursor = await conn.execute(
            "SELECT line_id, kind, item_id, purchase_kind FROM settlement_lines ORDER BY seq"
        )
        rows = [tuple(row.values()) for row in await cursor.fetchall()]
    assert rows == [("tip:x", "tip", "", ""), ("buy:p1", "purchase", "", "")]
