"""``tipmeter admin create``: the first operator (and any other) from the command line.

The password is asked twice on the terminal, or read as one line from standard input when that
is not a terminal (for scripts: ``printf '%s\n' "$pw" | tipmeter admin create ada``). It is never
an argument nor a ``TIPMETER_`` variable: arguments show in the process list and in shell
history, and the settings are printed by ``tipmeter config``.
"""

from __future__ import annotations

import getpass
import sys

from server.console import auth, store
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger
from settlement.ledger.times import at


def read_password() -> str | None:
    """The new operator's password, or None (with the reason printed) when none was given."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("tipmeter admin: the passwords differ", file=sys.stderr)
            return None
    else:
        password = sys.stdin.readline().rstrip("\n")
    why = auth.check_password_rules(password)
    if why is not None:
        print(f"tipmeter admin: {why}", file=sys.stderr)
        return None
    return password


async def create(
    config: DatabaseConfig,
    operator_id: str,
    role: str,
    password: str,
    now_ms: int,
    *,
    migrate: bool,
) -> bool:
    """Create the operator (audited as done by ``cli``); False when the name is taken.
    ``migrate`` applies missing migrations first (the embedded database)."""
    ledger = await Ledger.open(config, migrate_schema=migrate)
    try:
        password_hash = auth.hash_password(password)
        async with ledger.database.connection() as conn, conn.transaction():
            made = await store.create_operator(conn, operator_id, role, password_hash, at(now_ms))
            await store.audit(
                conn,
                operator_id="cli",
                action="operator_create",
                target=operator_id,
                outcome="ok" if made else "exists",
                detail={"role": role},
                remote_addr="",
                at=at(now_ms),
            )
        return made
    finally:
        await ledger.close()
