"""Collection on the settlement worker's timer, with real ``tipmeter worker`` processes.

Two workers sweep the same ledger on a short interval: each case is opened once and each due
retry run once. A worker killed (``kill -9``) right after a case change committed leaves its
``collection.*`` webhook in the outbox, and the next worker's relay delivers it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.store import Store
from settlement import webhooks
from settlement.collection import collector as collection
from settlement.collection.collector import case_id_of
from settlement.config import Checkpoint
from settlement.ledger.ledger import Ledger
from settlement.ledger.settlements import settlement_id_of
from settlement.queue import request_settlement
from settlement.sandbox_http import HttpGateway
from tests.metering.helpers import tip
from tests.settlement.collection.helpers import card_tab
from tests.settlement.crash_support import WorkerRig, start_worker
from tests.settlement.receiver import receiving
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

#: How long the workers may take for what the test waits on (generous: shared CPU).
WAIT_S = 60.0
SECRET = "whsec_timer"
RETRYABLE = "tok_capture_decline_insufficient_funds"
NEVER = "tok_capture_decline_stolen_card"


async def _declined_tab(meter: Meter, gateway: HttpGateway, customer: str, card: str) -> str:
    """A frozen tab on ``card`` (kept on file) whose capture the sandbox will decline."""
    ref = await card_tab(meter, gateway, customer, card)
    assert (await meter.tip(ref, tip("t0", 300, room="roomA"))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    return settlement_id_of(ref)


async def _rows(ledger: Ledger, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(sql, args)
        return list(await cursor.fetchall())


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    await eventually(check, timeout_s=WAIT_S, what=what)


def _stop(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(20)
    finally:
        if worker.poll() is None:
            worker.kill()


async def test_two_workers_open_each_case_once_and_run_each_due_retry_once(
    rig: WorkerRig,
) -> None:
    live_meter, gateway, ledger = rig.meter, rig.gateway, rig.ledger
    retryable = [await _declined_tab(live_meter, gateway, f"r{n}", RETRYABLE) for n in range(3)]
    never = [await _declined_tab(live_meter, gateway, f"n{n}", NEVER) for n in range(2)]
    env = rig.env(
        collection_sweep_interval_ms="100",
    )
    workers = [start_worker(env, rig.logs / f"w{n}.log") for n in range(2)]
    try:

        async def opened_and_never_closed() -> bool:
            rows = await _rows(ledger, "SELECT state FROM collection_cases")
            states = sorted(row["state"] for row in rows)
            return states == ["exhausted"] * 2 + ["open"] * 3

        # Nobody calls the sweep: the workers' timer settles, opens the cases, and closes
        # the ones no retry may follow (stolen card, no link).
        await _until(opened_and_never_closed, "every case is opened")
        # Make the retries due now (their schedule says a day): the timer runs them.
        await _rows(
            ledger,
            "UPDATE collection_cases SET next_retry_at = now() - interval '1 second' "
            "WHERE state = 'open' RETURNING case_id",
        )

        async def retried() -> bool:
            rows = await _rows(
                ledger, "SELECT count(*) AS n FROM collection_cases WHERE retries_n = 1"
            )
            return int(rows[0]["n"]) == len(retryable)

        await _until(retried, "every due retry ran")
        for _ in range(3):  # a few more rounds of both timers: nothing is opened or run again
            await asyncio.sleep(0.1)
    finally:
        codes = [await asyncio.to_thread(_stop, worker) for worker in workers]
    assert codes == [0, 0]
    cases = await _rows(ledger, "SELECT case_id, settlement_id, retries_n FROM collection_cases")
    assert sorted(row["settlement_id"] for row in cases) == sorted(retryable + never)
    attempts = await _rows(
        ledger, "SELECT case_id, attempt_no, status, source FROM collection_attempts"
    )
    assert sorted((a["case_id"], a["attempt_no"], a["status"], a["source"]) for a in attempts) == (
        sorted((case_id_of(sid), 1, "declined", "retry") for sid in retryable)
    )
    for sid in retryable:  # one authorization per attempt number, at the processor too
        assert await gateway.lookup(f"collect:{case_id_of(sid)}:1:auth") is not None
        assert await gateway.lookup(f"collect:{case_id_of(sid)}:2:auth") is None
    for n in range(2):
        assert "Traceback" not in (rig.logs / f"w{n}.log").read_text()


async def test_a_webhook_committed_before_a_kill_9_is_relayed_by_the_next_worker(
    rig: WorkerRig,
    store: Store,
) -> None:
    live_meter, gateway, ledger = rig.meter, rig.gateway, rig.ledger
    sid = await _declined_tab(live_meter, gateway, "k1", NEVER)
    case_id = case_id_of(sid)
    event_id = webhooks.event_id(collection.EXHAUSTED, case_id)
    async with receiving() as receiver:
        env = rig.env(
            collection_sweep_interval_ms="100",
            webhook_url=receiver.url,
            webhook_secret=SECRET,
        )
        crashing = start_worker(env, rig.logs / "a.log", crash_at=Checkpoint.COLLECTION_COMMITTED)
        assert await asyncio.to_thread(crashing.wait, WAIT_S) == -signal.SIGKILL

        # Committed: the case is exhausted and its webhook is in the outbox, unrelayed; the
        # webhook queue never saw it.
        [case] = await _rows(
            ledger, "SELECT state FROM collection_cases WHERE case_id = %s", case_id
        )
        assert case["state"] == "exhausted"
        [row] = await _rows(
            ledger, "SELECT relayed_at FROM collection_outbox WHERE event_id = %s", event_id
        )
        assert row["relayed_at"] is None
        assert not await store.client.hexists("tm:{hooks}:events", event_id)
        assert await store.client.zscore("tm:{hooks}:sent", event_id) is None

        worker = start_worker(env, rig.logs / "b.log")
        try:

            def delivered() -> list[dict[str, Any]]:
                events = [orjson.loads(r.body) for r in receiver.received]
                return [e for e in events if e["id"] == event_id]

            async def arrived() -> bool:
                return bool(delivered())

            await _until(arrived, "the relayed webhook is delivered")
        finally:
            assert await asyncio.to_thread(_stop, worker) == 0
    [event] = delivered()
    assert event["type"] == collection.EXHAUSTED
    assert (event["data"]["case_id"], event["data"]["settlement_id"]) == (case_id, sid)
    [row] = await _rows(
        ledger, "SELECT relayed_at FROM collection_outbox WHERE event_id = %s", event_id
    )
    assert row["relayed_at"] is not None
    for received in receiver.received:
        webhooks.verify_signature(
            received.body,
            received.headers["tipmeter-signature"],
            SECRET,
            now_s=int(time.time()),
        )
