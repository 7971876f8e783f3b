"""Schema migrations: numbered SQL files, applied in order, once, under a lock.

Each file of ``migrations/`` is named ``NNNN_what.sql``. :func:`migrate` takes a transaction-wide
advisory lock, reads which versions ``schema_migrations`` lists, and applies the missing ones in
order, each recorded in the same transaction — so several processes starting at once apply each
migration exactly once (the others wait on the lock, then find nothing to do), and a migration
that fails leaves the schema as it was.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
from psycopg.rows import DictRow

from settlement.ledger.errors import LedgerError

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
#: The advisory lock every migrating process takes (an arbitrary constant: "tipmeter").
MIGRATION_LOCK_ID: Final = 0x7469706D65746572
_NAME: Final = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def migrations(directory: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    """Every migration in ``directory``, in version order (a version twice is refused).

    Numbers may leave gaps: they are handed out to changes developed side by side, and one
    that needed no migration leaves its number unused. Each is still applied once, in order.
    """
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise LedgerError(f"migration {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    found.sort(key=lambda migration: migration.version)
    for before, migration in itertools.pairwise(found):
        if migration.version == before.version:
            raise LedgerError(f"migration {migration.version:04d} exists twice")
    if found and found[0].version < 1:
        raise LedgerError("migration numbers start at 0001")
    return tuple(found)


#: The schema version this code needs: the newest migration.
SCHEMA_VERSION: Final = max((m.version for m in migrations()), default=0)

_CREATE_VERSIONS: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: psycopg.AsyncConnection[DictRow]) -> list[int]:
    """Apply every missing migration; return the versions applied now (empty if none)."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        await conn.execute(_CREATE_VERSIONS)
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {row["version"] for row in await cursor.fetchall()}
        for migration in migrations():
            if migration.version in done:
                continue
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
    return applied_now


async def schema_version(conn: psycopg.AsyncConnection[DictRow]) -> int:
    """The newest migration applied (0 on an empty database)."""
    cursor = await conn.execute(
        "SELECT coalesce(max(version), 0) AS version FROM schema_migrations"
        if await _has_versions(conn)
        else "SELECT 0 AS version"
    )
    row = await cursor.fetchone()
    return int(row["version"]) if row is not None else 0


async def _has_versions(conn: psycopg.AsyncConnection[DictRow]) -> bool:
    cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
    row = await cursor.fetchone()
    return bool(row and row["present"])
