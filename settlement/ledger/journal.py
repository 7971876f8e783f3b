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
    #: A model's share held during a dispute (migration 0007, ``TIPMETER_DISPUTE_MODEL_SHARE``).
    MODEL_HELD = "model_held"


class EntryCode(IntEnum):
    """Kinds of journal entry (the ``entry_codes`` table holds the same numbers and names)."""

    TAB_CHARGE = 1
    TAB_CAPTURE = 2
    TAB_RECEIVABLE = 3
    #: The tax in a captured tab's lines (settlement.ledger.invoices, migration 0009).
    TAB_TAX = 4
    #: Refunds and disputes (settlement.refunds, docs/refunds.md): codes 10-19.
    REFUND = 10
    DISPUTE_OPENED = 11
    DISPUTE_WON = 12
    DISPUTE_LOST = 13
    #: The tax in a refunded amount, given back (settlement.ledger.invoices, migration 0009).
    REFUND_TAX = 14
    #: Collection (settlement.collection, docs/collection.md): codes 20-29.
    COLLECTION_CAPTURE = 20
    COLLECTION_EARNINGS = 21
    COLLECTION_WRITE_OFF = 22
    COLLECTION_RECEIVABLE = 23
    #: Memberships (settlement.subscriptions, docs/subscriptions.md): codes 30-39.
    SUBSCRIPTION_CHARGE = 30


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


async def post(conn: Connection, entries: Sequence[Entry]) -> None:
    """Write ``entries`` and their postings in the caller's transaction.

    Idempotent by entry id: an entry that exists already, and its postings, are left as they
    are. Accounts are created on first use. No statement needs the answer of another, so a
    caller in pipeline mode sends them all in one round trip; postings name their account by
    code and the database joins the id in. Postings of zero are left out (a model with a 0 %
    share earns nothing, and the database refuses zero postings); the balance of each entry is
    checked by the database at commit.
    """
    postings = [
        (entry.entry_id, number, posting)
        for entry in entries
        for number, posting in enumerate(
            (p for p in entry.postings if p.amount_minor != 0), start=1
        )
    ]
    if not postings:
        return
    accounts = {p.account.code: p.account for _, _, p in postings}
    await conn.execute(
        """
        INSERT INTO accounts (code, kind, currency, owner)
        SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
        ON CONFLICT (code) DO NOTHING
        """,
        (
            list(accounts),
            [a.kind.value for a in accounts.values()],
            [a.currency for a in accounts.values()],
            [a.owner for a in accounts.values()],
        ),
    )
    await conn.execute(
        """
        INSERT INTO journal_entries (entry_id, code, currency, settlement_id, posted_at)
        SELECT * FROM unnest(%s::text[], %s::smallint[], %s::char(3)[], %s::text[],
                             %s::timestamptz[])
        ON CONFLICT (entry_id) DO NOTHING
        """,
        (
            [e.entry_id for e in entries],
            [int(e.code) for e in entries],
            [e.currency for e in entries],
            [e.settlement_id or None for e in entries],
            [e.posted_at for e in entries],
        ),
    )
    await conn.execute(
        """
        INSERT INTO postings (entry_id, posting_no, account_id, currency, amount_minor)
        SELECT p.entry_id, p.posting_no, a.account_id, p.currency, p.amount_minor
        FROM unnest(%s::text[], %s::smallint[], %s::text[], %s::char(3)[], %s::bigint[])
            AS p (entry_id, posting_no, code, currency, amount_minor)
        JOIN accounts a ON a.code = p.code
        ON CONFLICT (entry_id, posting_no) DO NOTHING
        """,
        (
            [entry_id for entry_id, _, _ in postings],
            [number for _, number, _ in postings],
            [p.account.code for _, _, p in postings],
            [p.account.currency for _, _, p in postings],
            [p.amount_minor for _, _, p in postings],
        ),
    )


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
