"""Invoice numbers: gap-free per series under concurrent transactions and rollbacks."""

from __future__ import annotations

import asyncio

from settlement.ledger.ledger import Ledger
from settlement.subscriptions import invoices


async def test_a_rolled_back_number_is_given_back(ledger: Ledger) -> None:
    async with ledger.database.connection() as conn:
        try:
            async with conn.transaction():
                assert await invoices.next_number(conn, "T2026") == 1
                raise RuntimeError("the invoice's transaction fails")
        except RuntimeError:
            pass
        async with conn.transaction():
            assert await invoices.next_number(conn, "T2026") == 1
        async with conn.transaction():
            assert await invoices.next_number(conn, "T2026") == 2
            assert await invoices.next_number(conn, "X2026") == 1  # per series


async def test_concurrent_transactions_number_without_gaps(ledger: Ledger) -> None:
    taken: list[int] = []

    async def one(n: int) -> None:
        async with ledger.database.connection() as conn:
            try:
                async with conn.transaction():
                    number = await invoices.next_number(conn, "C2026")
                    await asyncio.sleep(0)
                    if n % 3 == 0:
                        raise RuntimeError("rolled back")
                    taken.append(number)
            except RuntimeError:
                pass

    await asyncio.gather(*(one(n) for n in range(30)))
    assert sorted(taken) == list(range(1, 21))
