"""Accounts and the double-entry journal.

An account is named by a code that says what it is (``model_payable:R:USD``); accounts are
created on first use. A journal entry has a client-minted id (derived from what it records, so
writing it again is a no-op), an entry code (one per kind of entry, :class:`EntryCode`) and two
or more postings; a posting's amount is positive for a debit and negative for a credit. The
database refuses any entry whose postings do not sum to zero in each currency (a deferred
constraint trigger), so an unbalanced entry can never be committed, whatever Python does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from settlement.ledger.db import Connection


class AccountKind(StrEnum):
    """Kinds of account (the ``account_kinds`` table says what each one means)."""

    CUSTOMER_TAB = "customer_tab"
    PROCESSOR_CLEARING = "processor_clearing"
    MODEL_PAYABLE = "model_payable"
    PLATFORM_REVENUE = "platform_revenue"
    EARNINGS_PENDING = "earnings_pending"
    REFUNDS = "refunds"
    CHARGEBACKS = "chargebacks"
    TAX_PAYABLE = "tax_payable"
    #: Money a processor took back through an open dispute (migration 0002, the refunds issue).
    DISPUTES_OPEN = "disputes_open"


class EntryCode(IntEnum):
    """Kinds of journal entry (the ``entry_codes`` table holds the same numbers and names)."""

    TAB_CHARGE = 1
    TAB_CAPTURE = 2
    TAB_RECEIVABLE = 3
    # Refunds and disputes (settlement.refunds): codes 10-19.
    REFUND = 10
    DISPUTE_OPENED = 11
    DISPUTE_WON = 12
    DISPUTE_LOST = 13


@dataclass(frozen=True, slots=True)
class Account:
    """An account, named by kind, owner and currency."""

    kind: AccountKind
    currency: str
    owner: str = ""

    @property
    def code(self) -> str:
        """The account's unique code: ``kind:owner:currency`` (``kind:currency`` unowned)."""
        if self.owner:
            return f"{self.kind}:{self.owner}:{self.currency}"
        return f"{self.kind}:{self.currency}"


def customer_tab(settlement_id: str, currency: str) -> Account:
    """What a customer owes on one tab."""
    return Account(AccountKind.CUSTOMER_TAB, currency, settlement_id)


def processor_clearing(processor: str, currency: str) -> Account:
    """What ``processor`` owes the platform for its captures."""
    return Account(AccountKind.PROCESSOR_CLEARING, currency, processor)


def model_payable(room: str, currency: str) -> Account:
    """What the platform owes the model of ``room``."""
    return Account(AccountKind.MODEL_PAYABLE, currency, room)


def platform_revenue(currency: str) -> Account:
    """The platform's own share of every charge."""
    return Account(AccountKind.PLATFORM_REVENUE, currency)


def earnings_pending(currency: str) -> Account:
    """Shares of charges that were not collected yet (declined or expired tabs)."""
    return Account(AccountKind.EARNINGS_PENDING, currency)


@dataclass(frozen=True, slots=True)
class Posting:
    """One side of an entry: ``amount_minor`` debited (positive) or credited (negative)."""

    account: Account
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Entry:
    """A journal entry: its id, its code, and postings that sum to zero."""

    entry_id: str
    code: EntryCode
    currency: str
    postings: tuple[Posting, ...]
    posted_at: datetime
    settlement_id: str = ""


def balanced(postings: Sequence[Posting]) -> bool:
    """True when ``postings`` sum to zero in each currency (the rule the database enforces)."""
    totals: dict[str, int] = {}
    for posting in postings:
        currency = posting.account.currency
        totals[currency] = totals.get(currency, 0) + posting.amount_minor
    return all(total == 0 for total in totals.values())


async def account_id(conn: Connection, account: Account) -> int:
    """The id of ``account``, created on first use (safe under concurrent first uses)."""
    cursor = await conn.execute(
        """
        INSERT INTO accounts (code, kind, currency, owner) VALUES (%s, %s, %s, %s)
        ON CONFLICT (code) DO NOTHING
        RETURNING account_id
        """,
        (account.code, account.kind.value, account.currency, account.owner),
    )
    row = await cursor.fetchone()
    if row is None:
        cursor = await conn.execute(
            "SELECT account_id FROM accounts WHERE code = %s", (account.code,)
        )
        row = await cursor.fetchone()
    if row is None:  # pragma: no cover - the row was inserted or found just above
        raise LookupError(f"account {account.code} vanished")
    return int(row["account_id"])


async def post(conn: Connection, entry: Entry) -> bool:
    """Write ``entry`` and its postings (in the caller's transaction); False if an entry with
    that id exists already (nothing is written: entries are idempotent by id).

    Postings of zero are left out (a model with a 0 % share earns nothing, and the database
    refuses zero postings); the balance is checked by the database at commit.
    """
    cursor = await conn.execute(
        """
        INSERT INTO journal_entries (entry_id, code, currency, settlement_id, posted_at)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (entry_id) DO NOTHING
        RETURNING entry_id
        """,
        (
            entry.entry_id,
            int(entry.code),
            entry.currency,
            entry.settlement_id or None,
            entry.posted_at,
        ),
    )
    if await cursor.fetchone() is None:
        return False
    rows = []
    for number, posting in enumerate(p for p in entry.postings if p.amount_minor != 0):
        rows.append(
            (
                entry.entry_id,
                number + 1,
                await account_id(conn, posting.account),
                posting.account.currency,
                posting.amount_minor,
            )
        )
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO postings (entry_id, posting_no, account_id, currency, amount_minor)
            VALUES (%s, %s, %s, %s, %s)
            """,
            rows,
        )
    return True


async def account_balance(conn: Connection, account: Account) -> int:
    """The sum of every posting to ``account`` (debits positive), 0 if it has none."""
    cursor = await conn.execute(
        """
        SELECT coalesce(sum(p.amount_minor), 0) AS balance
        FROM postings p JOIN accounts a USING (account_id)
        WHERE a.code = %s
        """,
        (account.code,),
    )
    row = await cursor.fetchone()
    return int(row["balance"]) if row is not None else 0


async def unbalanced_entries(conn: Connection) -> list[str]:
    """Ids of entries whose postings do not sum to zero (always empty: the database refuses
    them; reconciliation asks anyway)."""
    cursor = await conn.execute(
        """
        SELECT entry_id FROM postings GROUP BY entry_id, currency HAVING sum(amount_minor) <> 0
        """
    )
    return [row["entry_id"] for row in await cursor.fetchall()]
