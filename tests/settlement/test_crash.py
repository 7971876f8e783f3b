"""kill -9 of real worker processes at each crash point: no double capture, nothing lost.

Each test opens tabs on a separate ``tipmeter sandbox-gateway`` process, kills a ``tipmeter
worker`` process at one point of the settlement of a tab, checks what that point left behind,
then lets another worker finish and checks the invariants against the sandbox's capture log.
"""

from __future__ import annotations

import asyncio
import random
import signal
from urllib.parse import urlsplit

import pytest

from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import TabRef
from settlement import scripts
from settlement.config import SETTLEMENT_CHECKPOINTS, Checkpoint
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox import Fault
from settlement.sandbox_http import HttpGateway
from settlement.worker import capture_key
from tests.settlement.crash_support import (
    WorkerRig,
    burst,
    check_invariants,
    open_tabs,
    start_worker,
)
from tests.settlement.helpers import past_claim_bound
from tests.support.processes import connected_to
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

SEED = 20_261_122
#: The claim bound of the workers ``worker_env`` describes (TIPMETER_SETTLE_CLAIM_IDLE_MS).
CLAIM_IDLE_MS = 1_000


async def _frozen_tabs(meter: Meter, gateway: HttpGateway, count: int) -> list[TabRef]:
    rng = random.Random(SEED)
    refs = await open_tabs(meter, gateway, count, rng)
    for ref in refs:
        await request_settlement(meter, ref, FreezeReason.MERCHANT)
    return refs


async def _finish_and_check(
    meter: Meter, gateway: HttpGateway, refs: list[TabRef], env: dict[str, str], ledger: Ledger
) -> None:
    await past_claim_bound(meter, CLAIM_IDLE_MS)  # the killed worker's entry is reclaimable
    report = await asyncio.to_thread(burst, env)
    assert report["left_pending"] == 0, report
    assert report["dead_lettered"] == 0, report
    findings = await check_invariants(meter, gateway, refs, ledger)
    assert findings.clean, findings
    assert findings.outcomes["settled"] + findings.outcomes["voided"] == len(refs)


@pytest.mark.parametrize("point", SETTLEMENT_CHECKPOINTS)
async def test_kill_at_each_crash_point(
    point: Checkpoint,
    rig: WorkerRig,
) -> None:
    live_meter, gateway, ledger = rig.meter, rig.gateway, rig.ledger
    refs = await _frozen_tabs(live_meter, gateway, 4)
    env = rig.env()
    # One tab at a time, so that exactly one tab reaches the point when the worker dies.
    crashing = start_worker(
        {**env, "TIPMETER_SETTLE_CONCURRENCY_MAX": "1"}, rig.logs / "w.log", crash_at=point
    )
    assert await asyncio.to_thread(crashing.wait, 30) == -signal.SIGKILL

    # What the point left behind: exactly one tab got that far.
    records = [await scripts.read_settlement(live_meter.store, ref) for ref in refs]
    begun = [r for r in records if r is not None and r[1].amount_minor is not None]
    log = await gateway.capture_log()
    assert len(begun) == 1
    tab, record = begun[0]
    if point is Checkpoint.BEFORE_GATEWAY:
        assert tab.state is TabState.SETTLING
        assert log == []
    elif point is Checkpoint.AFTER_GATEWAY:
        assert tab.state is TabState.SETTLING  # charged, but not recorded
        assert len(log) == (1 if tab.accrued_minor else 0)
    else:
        assert tab.state in (TabState.SETTLED, TabState.VOIDED)
        assert not record.followups_done
        # Between the two stores: the outcome is in Redis; the ledger has it only after.
        in_ledger = await ledger.read_tab(tab.ref) is not None
        assert in_ledger is (point is Checkpoint.AFTER_LEDGER)

    await _finish_and_check(live_meter, gateway, refs, env, ledger)


async def _wait_until_begun(meter: Meter, ref: TabRef) -> None:
    """Wait until a worker has recorded the amount of ``ref`` (it calls the gateway next)."""

    async def begun() -> bool:
        found = await scripts.read_settlement(meter.store, ref)
        return found is not None and found[1].amount_minor is not None

    await eventually(begun, what="the worker begins the settlement")


async def _captured(gateway: HttpGateway, ref: TabRef) -> bool:
    return await gateway.lookup(capture_key(ref)) is not None


@pytest.mark.parametrize(
    ("fault", "committed"), [(Fault.SLOW, False), (Fault.SLOW_AFTER_COMMIT, True)]
)
async def test_kill_while_the_gateway_call_is_in_flight(
    fault: Fault,
    committed: bool,
    rig: WorkerRig,
) -> None:
    """An external kill -9, timed by the sandbox's slow replies (no hook involved)."""
    live_meter, gateway, ledger = rig.meter, rig.gateway, rig.ledger
    refs = await _frozen_tabs(live_meter, gateway, 1)
    tab = await live_meter.tabs.read(refs[0])
    assert tab is not None
    if tab.accrued_minor == 0:
        pytest.fail("the seed must give the tab an amount to capture")
    await gateway.inject("capture", fault)  # the sandbox then waits 2 s
    env = rig.env(
        gateway_timeout_ms="5000",
        settle_claim_idle_ms="6000",
    )
    worker = start_worker(env, rig.logs / "w.log")
    try:
        await _wait_until_begun(live_meter, refs[0])
        # In flight: the worker's capture is its first call to the sandbox, so its connection
        # to the sandbox means the request is on its way; an "after commit" fault is committed
        # before the sandbox's 2 s wait.
        port = urlsplit(rig.sandbox_url).port
        assert port is not None
        await eventually(lambda: connected_to(worker.pid, port))
        if committed:
            await eventually(lambda: _captured(gateway, refs[0]))
        worker.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(worker.wait, 10) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
    found = await scripts.read_settlement(live_meter.store, refs[0])
    assert found is not None
    assert found[0].state is TabState.SETTLING  # killed before it learnt the outcome
    assert (await gateway.lookup(capture_key(refs[0])) is not None) is committed
    # The sandbox finishes the slow call (and commits it) by itself.
    await eventually(lambda: _captured(gateway, refs[0]))
    fast = rig.env()
    await past_claim_bound(live_meter, CLAIM_IDLE_MS)
    report = await asyncio.to_thread(burst, fast)
    assert report["statuses"] == {"settled": 1}, report
    findings = await check_invariants(live_meter, gateway, refs, ledger)
    assert findings.clean, findings


async def test_a_worker_settles_and_stops_cleanly_on_sigterm(
    rig: WorkerRig,
) -> None:
    live_meter, gateway, ledger = rig.meter, rig.gateway, rig.ledger
    refs = await _frozen_tabs(live_meter, gateway, 3)
    worker = start_worker(rig.env(), rig.logs / "w.log")
    try:

        async def clean() -> bool:
            return (await check_invariants(live_meter, gateway, refs, ledger)).clean

        await eventually(clean, what="the worker settles every tab")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    findings = await check_invariants(live_meter, gateway, refs, ledger)
    assert findings.clean, findings
    assert "Traceback" not in (rig.logs / "w.log").read_text()
