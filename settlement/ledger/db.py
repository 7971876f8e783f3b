"""The database: a bounded asyncio connection pool, and the schema's readiness.

The driver is psycopg 3 (with :mod:`psycopg_pool`): made for asyncio and for blocking code alike
(the CLI's ``migrate`` and ``reconcile`` share the queries), typed for ``mypy --strict``, with
server-side parameters, so SQL is written out in full and values are never spliced into it.
Every bound is named here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from settlement.ledger.errors import LedgerUnavailable

#: Connections one process keeps open at least, and opens at most.
POOL_CONNECTIONS_MIN_DEFAULT: Final = 1
POOL_CONNECTIONS_MAX_DEFAULT: Final = 10
#: How long a caller waits for a free connection before the call counts as unavailable.
POOL_WAIT_S_DEFAULT: Final = 10.0
#: Longest one statement may run (set on every connection): a stuck query is cancelled.
STATEMENT_TIMEOUT_MS_DEFAULT: Final = 30_000
#: How long opening a connection may take.
CONNECT_TIMEOUT_S_DEFAULT: Final = 10

Connection = psycopg.AsyncConnection[DictRow]


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Where the ledger is and how many connections it may take."""

    url: str
    connections_min: int = POOL_CONNECTIONS_MIN_DEFAULT
    connections_max: int = POOL_CONNECTIONS_MAX_DEFAULT
    wait_s: float = POOL_WAIT_S_DEFAULT
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS_DEFAULT


class Database:
    """A pool of connections to the ledger. Open it with :meth:`open`, close with :meth:`close`.

    :meth:`connection` lends one connection for a block; a transaction is opened explicitly by
    the caller (``async with conn.transaction()``), so every money write says where it commits.
    """

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            config.url,
            min_size=config.connections_min,
            max_size=config.connections_max,
            timeout=config.wait_s,
            open=False,
            connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={
                "row_factory": dict_row,
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S_DEFAULT,
                "options": f"-c statement_timeout={config.statement_timeout_ms}",
            },
            name="tipmeter-ledger",
        )

    @classmethod
    async def open(cls, config: DatabaseConfig) -> Database:
        """Open the pool and wait until a first connection works (LedgerUnavailable if not)."""
        database = cls(config)
        try:
            await database._pool.open(wait=True, timeout=config.wait_s)
        except (PoolTimeout, psycopg.Error) as exc:
            await database._pool.close()
            raise LedgerUnavailable(f"the ledger database cannot be reached: {exc}") from None
        return database

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Lend one connection; database failures become :class:`LedgerUnavailable`."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise LedgerUnavailable(f"no ledger connection free: {exc}") from None
        except psycopg.OperationalError as exc:
            raise LedgerUnavailable(f"the ledger database failed: {exc}") from None

    async def ping(self) -> None:
        """Run ``SELECT 1``; raise LedgerUnavailable if the database does not answer."""
        async with self.connection() as conn:
            await conn.execute("SELECT 1")
