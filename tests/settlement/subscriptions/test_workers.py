"""Several real ``tipmeter worker`` processes race over the same due renewals, and are killed
with SIGKILL while they charge: every due period is charged exactly once, nothing is missed.

The processor is a separate ``tipmeter sandbox-gateway`` process (it outlives the workers it
serves, and its capture log is the ground truth of what was charged), slowed a little so that
kills land while charges are in flight. The subscriptions are signed up eight days in the past
on a daily plan, so the workers find six periods per subscription to catch up on.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from metering.clock import SystemClock
from server.embedded_redis import free_port
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.sandbox_http import HttpGateway
from settlement.subscriptions.service import SubCode, Subscriptions
from tests.settlement.crash_support import start_worker, worker_env
from tests.settlement.subscriptions.helpers import DAY_MS, plan, signup
from tests.support.processes import TipmeterProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

SEED = 20_261_130
SUBSCRIPTIONS = 20
DAYS_BACK = 5
WORKERS = 3
KILLS = 4
DEADLINE_S = 120.0


@pytest.fixture
def slow_sandbox(tmp_path: Path) -> Iterator[TipmeterProcess]:
    """A sandbox gateway process that takes 30 ms per call."""
    port = free_port()
    process = TipmeterProcess(
        ["sandbox-gateway"],
        {"TIPMETER_SANDBOX_PORT": str(port), "TIPMETER_SANDBOX_LATENCY_MS": "30"},
        tmp_path,
        port=port,
    )
    process.start(ready_path="/v1/captures")
    try:
        yield process
    finally:
        process.stop()


async def _settled(ledger: Ledger, now_ms: int) -> bool:
    """Nothing due any more, no attempt in flight."""
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            """
            SELECT (SELECT count(*) FROM subscriptions
                    WHERE next_action_at <= to_timestamp(%s / 1000.0)) AS due,
                   (SELECT count(*) FROM subscription_attempts
                    WHERE status IN ('pending', 'unknown')) AS in_flight
            """,
            (now_ms,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return bool(row["due"] == 0 and row["in_flight"] == 0)


async def test_racing_workers_killed_mid_charge_charge_each_period_once(
    ledger: Ledger, database_url: str, redis_url: str, slow_sandbox: TipmeterProcess, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    gateway = HttpGateway(slow_sandbox.base_url)
    subs = Subscriptions(ledger.database, ProcessorRegistry.single(gateway, name="sandbox-http"))
    started_ms = SystemClock().now_ms() - DAYS_BACK * DAY_MS
    daily = plan("daily", period={"unit": "day", "length": 1}, prices={"USD": {"price_minor": 499}})
    await subs.put_plan(daily, started_ms)
    for n in range(SUBSCRIPTIONS):
        created = await subs.create(signup(f"w{n}", "daily", country="DE"), started_ms)
        assert created.code is SubCode.APPLIED

    env = worker_env(redis_url, slow_sandbox.base_url, database_url)
    workers: list[subprocess.Popen[bytes]] = [
        start_worker(env, tmp_path / f"worker-{i}.log") for i in range(WORKERS)
    ]
    killed = 0
    deadline = time.monotonic() + DEADLINE_S
    try:
        while killed < KILLS and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed += 1
            workers.append(start_worker(env, tmp_path / f"worker-r{killed}.log"))
        await eventually(
            lambda: _settled(ledger, SystemClock().now_ms()),
            timeout_s=max(0.0, deadline - time.monotonic()),
            interval_s=0.3,
            what="the workers charge every due period",
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)

    captures = await gateway.listed_captures()
    per_period = Counter(c.idempotency_key.removesuffix(":capture") for c in captures)
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT subscription_id, period_no, status FROM subscription_periods"
        )
        periods = await cursor.fetchall()
        cursor = await conn.execute(
            "SELECT count(*) AS n, coalesce(sum(total_minor), 0) AS total FROM invoices"
        )
        invoiced = await cursor.fetchone()
        cursor = await conn.execute("SELECT number FROM invoices ORDER BY number")
        numbers = [row["number"] for row in await cursor.fetchall()]
        cursor = await conn.execute("SELECT count(*) AS n FROM journal_entries WHERE code = 30")
        entries = await cursor.fetchone()
    assert invoiced is not None
    assert entries is not None
    expected = SUBSCRIPTIONS * (DAYS_BACK + 1)
    print(
        f"killed {killed} workers; {len(captures)} captures, {len(periods)} periods, "
        f"{invoiced['n']} invoices"
    )
    # 0 periods charged twice: one capture per period key at the processor.
    assert max(per_period.values()) == 1
    # 0 due periods missed: every subscription has begun and paid each of its due periods.
    assert len(periods) == expected
    assert {row["status"] for row in periods} == {"paid"}
    assert len(captures) == expected
    assert entries["n"] == expected
    assert invoiced["n"] == expected
    assert invoiced["total"] == sum(c.amount_minor for c in captures)
    assert numbers == list(range(1, expected + 1))
    assert killed == KILLS
