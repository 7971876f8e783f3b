"""The SQL of the console's own tables: operators, their sessions and the audit log.

Every function takes an open connection; the caller decides the transaction. Times are
arguments (``at``), never the database's ``now()``, so the console follows the server's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from settlement.ledger.db import Connection


@dataclass(frozen=True, slots=True)
class Operator:
    """One operator account, as the console reads it."""

    operator_id: str
    role: str
    password_hash: str
    failed_n: int
    locked_until: datetime | None
    disabled: bool


@dataclass(frozen=True, slots=True)
class Session:
    """A live console session and its operator."""

    session_id: str
    operator_id: str
    role: str
    csrf_token: str
    expires_at: datetime


async def create_operator(
    conn: Connection, operator_id: str, role: str, password_hash: str, at: datetime
) -> bool:
    """Create an operator; False when the name is taken (nothing changes then)."""
    cursor = await conn.execute(
        """
        INSERT INTO operators (operator_id, role, password_hash, created_at)
        VALUES (%s, %s, %s, %s) ON CONFLICT (operator_id) DO NOTHING
        """,
        (operator_id, role, password_hash, at),
    )
    return cursor.rowcount == 1


async def set_password(conn: Connection, operator_id: str, password_hash: str) -> bool:
    """Replace an operator's password and unlock the account; False if there is none."""
    cursor = await conn.execute(
        """
        UPDATE operators SET password_hash = %s, failed_n = 0, locked_until = NULL
        WHERE operator_id = %s
        """,
        (password_hash, operator_id),
    )
    return cursor.rowcount == 1


async def operator_for_login(conn: Connection, operator_id: str) -> Operator | None:
    """The operator named ``operator_id``, its row locked until the transaction ends (so two
    racing logins count their failures one after the other)."""
    cursor = await conn.execute(
        """
        SELECT operator_id, role, password_hash, failed_n, locked_until, disabled
        FROM operators WHERE operator_id = %s FOR UPDATE
        """,
        (operator_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else Operator(**row)


async def record_failure(
    conn: Connection, operator_id: str, failed_n: int, locked_until: datetime | None
) -> None:
    """Store a failed login's count and, when it reached the bound, the lock's end."""
    await conn.execute(
        "UPDATE operators SET failed_n = %s, locked_until = %s WHERE operator_id = %s",
        (failed_n, locked_until, operator_id),
    )


async def record_success(conn: Connection, operator_id: str, at: datetime) -> None:
    """A good login: the failure count starts over."""
    await conn.execute(
        """
        UPDATE operators SET failed_n = 0, locked_until = NULL, last_login_at = %s
        WHERE operator_id = %s
        """,
        (at, operator_id),
    )


async def create_session(
    conn: Connection,
    session_id: str,
    operator_id: str,
    csrf_token: str,
    remote_addr: str,
    at: datetime,
    expires_at: datetime,
) -> None:
    """Record a new session."""
    await conn.execute(
        """
        INSERT INTO console_sessions
            (session_id, operator_id, csrf_token, remote_addr, created_at, expires_at)
        VALUES (%s, %s, %s, %s, %s, %s)
        """,
        (session_id, operator_id, csrf_token, remote_addr, at, expires_at),
    )


async def live_session(conn: Connection, session_id: str, at: datetime) -> Session | None:
    """The session ``session_id`` if it is live at ``at`` and its operator is enabled."""
    cursor = await conn.execute(
        """
        SELECT s.session_id, s.operator_id, o.role, s.csrf_token, s.expires_at
        FROM console_sessions s JOIN operators o USING (operator_id)
        WHERE s.session_id = %s AND s.ended_at IS NULL AND s.expires_at > %s
          AND NOT o.disabled
        """,
        (session_id, at),
    )
    row = await cursor.fetchone()
    return None if row is None else Session(**row)


async def end_session(conn: Connection, session_id: str, at: datetime) -> None:
    """End a session (logout)."""
    await conn.execute(
        "UPDATE console_sessions SET ended_at = %s WHERE session_id = %s AND ended_at IS NULL",
        (at, session_id),
    )


async def audit(
    conn: Connection,
    *,
    operator_id: str,
    action: str,
    target: str,
    outcome: str,
    detail: dict[str, Any],
    remote_addr: str,
    at: datetime,
) -> None:
    """Append one line to the audit log."""
    await conn.execute(
        """
        INSERT INTO console_audit
            (operator_id, action, target, outcome, detail, remote_addr, at)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (operator_id, action, target, outcome, Jsonb(detail), remote_addr, at),
    )


async def audit_log(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` lines of the audit log, newest first."""
    cursor = await conn.execute(
        """
        SELECT audit_no, operator_id, action, target, outcome, detail, remote_addr, at
        FROM console_audit ORDER BY audit_no DESC LIMIT %s
        """,
        (limit,),
    )
    return list(await cursor.fetchall())


async def operators(conn: Connection) -> list[dict[str, Any]]:
    """Every operator (no password hashes)."""
    cursor = await conn.execute(
        """
        SELECT operator_id, role, failed_n, locked_until, disabled, created_at, last_login_at
        FROM operators ORDER BY operator_id
        """
    )
    return list(await cursor.fetchall())
