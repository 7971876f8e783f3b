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
