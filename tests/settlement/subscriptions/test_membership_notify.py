"""The durable trigger of the ``subscription`` message: a change a member sees is notified in
the transaction that writes it (migration 0011), and only then."""

from __future__ import annotations

import psycopg

from settlement.ledger.ledger import Ledger
from settlement.subscriptions.service import CancelMode, SubCode
from settlement.subscriptions.store import SUBSCRIPTIONS_CHANNEL, read, save
from tests.settlement.subscriptions.helpers import World, plan, signup

#: Generous: a pass returns as soon as the notification arrives.
WAIT_S = 20.0


async def _next(listener: psycopg.AsyncConnection[object]) -> str:
    """The next notification (PostgreSQL delivers them in commit order)."""
    async for notice in listener.notifies(timeout=WAIT_S, stop_after=1):
        return notice.payload
    raise AssertionError("no notification")


async def _marker(world: World, listener: psycopg.AsyncConnection[object], n: int) -> None:
    """Commit another member's change and see it come next: nothing was sent in between."""
    await world.subs.create(signup(f"m{n}", "silver", customer=f"marker{n}"), world.clock.now_ms())
    assert await _next(listener) == f"marker{n} m{n}"


async def test_each_change_is_notified_on_commit_and_a_claim_or_a_rollback_is_not(
    ledger: Ledger,
) -> None:
    world = World(ledger)
    now = world.clock.now_ms()
    await world.subs.put_plan(plan("silver", rank=1), now)
    await world.subs.put_plan(plan("gold", rank=2, trial_days=7), now)
    async with await psycopg.AsyncConnection.connect(
        ledger.database.config.url, autocommit=True
    ) as listener:
        await listener.execute(f"LISTEN {SUBSCRIPTIONS_CHANNEL}")
        created = await world.subs.create(signup("n1", "silver", customer="carol"), now)
        assert created.code is SubCode.APPLIED
        assert await _next(listener) == "carol n1"  # created (its first period begun)
        await world.run()  # period 1 charged: paid
        assert await _next(listener) == "carol n1"

        # A worker's claim is no change a member sees: nothing is sent.
        async with ledger.database.connection() as conn, conn.transaction():
            sub = await read(conn, "n1", lock=True)
            assert sub is not None
            await conn.execute(
                "UPDATE subscriptions SET lease_until = now(), next_action_at = now()"
                " WHERE subscription_id = 'n1'"
            )
        await _marker(world, listener, 1)

        # A change rolled back is never announced.
        try:
            async with ledger.database.connection() as conn, conn.transaction():
                sub = await read(conn, "n1", lock=True)
                assert sub is not None
                await conn.execute(
                    "UPDATE subscriptions SET cancel_mode = 'period_end'"
                    " WHERE subscription_id = 'n1'"
                )
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        await _marker(world, listener, 2)

        assert (await world.subs.change_plan("n1", "gold", now)).code is SubCode.APPLIED
        assert await _next(listener) == "carol n1"
        # A pause asked for (it takes effect at the period's end): a column added after this
        # trigger (migration 0012) is announced too.
        assert (await world.subs.pause("n1", now)).code is SubCode.APPLIED
        assert await _next(listener) == "carol n1"
        cancelled = await world.subs.cancel("n1", CancelMode.NOW, now)
        assert cancelled.code is SubCode.APPLIED
        assert await _next(listener) == "carol n1"
        # The same row written again unchanged: nothing new to tell.
        async with ledger.database.connection() as conn, conn.transaction():
            sub = await read(conn, "n1", lock=True)
            assert sub is not None
            await save(conn, sub)
        await _marker(world, listener, 3)
