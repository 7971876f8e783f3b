"""The journal against a real PostgreSQL: the database itself refuses what would unbalance it."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from settlement.ledger import journal
from settlement.ledger.journal import Entry, EntryCode, Posting
from settlement.ledger.ledger import Ledger

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _entry(entry_id: str, *postings: Posting) -> Entry:
    return Entry(entry_id, EntryCode.TAB_CHARGE, "USD", postings, AT)


async def test_a_balanced_entry_is_written_once(ledger: Ledger) -> None:
    owed = journal.customer_tab("c1/t1", "USD")
    entry = _entry(
        "e1",
        Posting(owed, 1_000),
        Posting(journal.model_payable("roomA", "USD"), -600),
        Posting(journal.platform_revenue("USD"), -400),
    )
    assert journal.balanced(entry.postings)
    for _ in range(2):  # idempotent by the client-minted id: the second write adds nothing
        async with ledger.database.connection() as conn, conn.transaction():
            await journal.post(conn, [entry])
    assert await ledger.account_balance(owed) == 1_000
    assert await ledger.account_balance(journal.model_payable("roomA", "USD")) == -600
    async with ledger.database.connection() as conn:
        assert await journal.unbalanced_entries(conn) == []


@pytest.mark.parametrize(
    ("postings", "message"),
    [
        (
            (
                Posting(journal.customer_tab("c1/t1", "USD"), 1_000),
                Posting(journal.platform_revenue("USD"), -999),
            ),
            "does not balance",
        ),
        ((Posting(journal.customer_tab("c1/t1", "USD"), 1_000),), "at least two are needed"),
    ],
)
async def test_the_database_refuses_an_unbalanced_entry(
    ledger: Ledger, postings: tuple[Posting, ...], message: str
) -> None:
    """Not Python: the deferred constraint trigger refuses it at commit, and nothing stays."""
    with pytest.raises(psycopg.errors.CheckViolation, match=message):
        async with ledger.database.connection() as conn, conn.transaction():
            await journal.post(conn, [_entry("bad", *postings)])
    async with ledger.database.connection() as conn:
        cursor = await conn.execute("SELECT count(*) AS n FROM journal_entries")
        row = await cursor.fetchone()
    assert row is not None
    assert row["n"] == 0


async def test_a_posting_in_another_currency_than_its_account_is_refused(ledger: Ledger) -> None:
    async with ledger.database.connection() as conn:
        async with conn.transaction():
            await journal.post(
                conn,
                [
                    Entry(
                        "eur",
                        EntryCode.TAB_CHARGE,
                        "EUR",
                        (
                            Posting(journal.customer_tab("c9/t9", "EUR"), 5),
                            Posting(journal.platform_revenue("EUR"), -5),
                        ),
                        AT,
                    )
                ],
            )
        cursor = await conn.execute(
            "SELECT account_id FROM accounts WHERE code = 'platform_revenue:EUR'"
        )
        found = await cursor.fetchone()
        assert found is not None
        eur = found["account_id"]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # noqa: PT012 - one transaction
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO journal_entries (entry_id, code, currency, posted_at) "
                    "VALUES ('x', 1, 'USD', now())"
                )
                await conn.execute(
                    "INSERT INTO postings (entry_id, posting_no, account_id, currency, "
                    "amount_minor) VALUES ('x', 1, %s, 'USD', 5), ('x', 2, %s, 'USD', -5)",
                    (eur, eur),
                )


async def test_the_journal_is_append_only(ledger: Ledger) -> None:
    entry = _entry(
        "e1",
        Posting(journal.customer_tab("c1/t1", "USD"), 10),
        Posting(journal.platform_revenue("USD"), -10),
    )
    async with ledger.database.connection() as conn:
        async with conn.transaction():
            await journal.post(conn, [entry])
        for statement in (
            "UPDATE postings SET amount_minor = 11 WHERE entry_id = 'e1' AND posting_no = 1",
            "DELETE FROM postings WHERE entry_id = 'e1'",
            "DELETE FROM journal_entries WHERE entry_id = 'e1'",
        ):
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                await conn.execute(statement.encode())


async def test_the_entry_codes_in_python_match_the_database(ledger: Ledger) -> None:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute("SELECT code, name FROM entry_codes ORDER BY code")
        rows = [(row["code"], row["name"]) for row in await cursor.fetchall()]
        cursor = await conn.execute("SELECT kind FROM account_kinds ORDER BY kind")
        kinds = [row["kind"] for row in await cursor.fetchall()]
    assert rows == [(code.value, code.name.lower()) for code in EntryCode]
    assert kinds == sorted(kind.value for kind in journal.AccountKind)
