"""Real PostgreSQL servers for the tests: one per test session, a fresh database per use.

The server is started on first use (most tests never need it) in an ephemeral folder, with
fsync off, and stopped when the session ends — also when a test fails (``stop_shared`` runs
from ``pytest_sessionfinish``, and at exit as a last resort). Every fresh database is a copy
of a template that has every migration applied, which takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import psycopg

from server.embedded_postgres import PostgresServer
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger

TEMPLATE: Final = "tipmeter_template"

_lock = threading.Lock()
_server: PostgresServer | None = None
_numbers = itertools.count(1)


def shared_server() -> PostgresServer:
    """The session's PostgreSQL server, started (with its migrated template) on first use."""
    global _server
    with _lock:
        if _server is None:
            server = PostgresServer(Path("/nonexistent"), ephemeral=True, durable=False)
            server.start()
            try:
                url = server.create_database(TEMPLATE)
                # In a thread of its own: the caller may be inside a running event loop.
                with ThreadPoolExecutor(max_workers=1) as pool:
                    pool.submit(asyncio.run, _migrate(url)).result()
            except BaseException:
                server.stop()
                raise
            _server = server
            atexit.register(stop_shared)
        return _server


async def _migrate(url: str) -> None:
    ledger = await Ledger.open(DatabaseConfig(url=url, connections_max=1), migrate_schema=True)
    await ledger.close()


def fresh_database(prefix: str = "t") -> str:
    """A new database with the current schema; its URL."""
    server = shared_server()
    name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'.encode())
    return server.url_for(name)


def stop_shared() -> None:
    """Stop the session's server if it was started."""
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None
