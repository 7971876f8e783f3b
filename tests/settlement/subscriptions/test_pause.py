"""Pause and resume a membership: the pause takes effect at the end of the paid period, nothing
is charged while paused (by the scheduler in process, and by a real ``tipmeter worker``), and a
resume begins the next period that day, every later charge counted from it."""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metering.clock import SystemClock
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.sandbox_http import HttpGateway
from settlement.subscriptions import lifecycle
from settlement.subscriptions.lifecycle import SubEvent, SubState
from settlement.subscriptions.service import CancelMode, SubCode, Subscriptions
from tests.settlement.crash_support import start_worker, worker_env
from tests.settlement.subscriptions.helpers import DAY_MS, START_MS, World, plan, signup
from tests.support.processes import TipmeterProcess
from tests.support.waiting import eventually


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).date().isoformat()


def test_the_table_pauses_only_a_paid_up_membership_and_resumes_it_active() -> None:
    assert lifecycle.sources(SubEvent.PAUSE) == {SubState.TRIALING, SubState.ACTIVE}
    assert lifecycle.apply(SubState.PAUSED, SubEvent.RESUME) is SubState.ACTIVE
    assert lifecycle.apply(SubState.PAUSED, SubEvent.RENEW) is None
    assert lifecycle.apply(SubState.PAUSED, SubEvent.CANCEL) is SubState.CANCELLED
    assert SubState.PAUSED not in lifecycle.RENEWING | lifecycle.ENTITLED


async def test_a_paused_membership_is_not_charged_and_resumes_on_the_day_of_the_resume(
    ledger: Ledger,
) -> None:
    world = World(ledger)
    await world.subs.put_plan(plan(), world.clock.now_ms())
    await world.subs.create(signup("p1"), world.clock.now_ms())
    await world.run()  # period 1: 31 January → 28 February, paid
    assert (await world.subs.pause("p1", world.clock.now_ms())).code is SubCode.APPLIED
    view = await world.subs.view("p1")
    assert view is not None
    assert view["state"] == "active"  # the paid month is kept
    assert _day(view["pause_at_ms"]) == "2026-02-28"
    assert view["next_charge_at_ms"] is None
    # A pause asked twice changes nothing; a plan change waits for the resume.
    assert (await world.subs.pause("p1", world.clock.now_ms())).code is SubCode.APPLIED
    await world.advance_days(29)  # 1 March: the pause took effect on 28 February
    view = await world.subs.view("p1")
    assert view is not None
    assert (view["state"], view["features"]) == ("paused", [])
    assert _day(view["paused_at_ms"]) == "2026-02-28"
    await world.advance_days(70)  # 10 May: nothing charged while paused
    assert len(world.gateway.captures) == 1
    assert [p["period_no"] for p in view["periods"]] == [1]

    world.clock.advance(DAY_MS // 2)  # 10 May, 12:00
    resumed = await world.subs.resume("p1", world.clock.now_ms())
    assert resumed.code is SubCode.APPLIED
    await world.run()
    assert len(world.gateway.captures) == 2  # period 2 charged on the day of the resume
    await world.advance_days(62)
    view = await world.subs.view("p1")
    assert view is not None
    assert view["state"] == "active"
    bounds = [(_day(p["starts_at_ms"]), _day(p["ends_at_ms"])) for p in view["periods"]]
    # Each charge after the resume falls on the 10th, at the resume's time of day.
    assert bounds == [
        ("2026-01-31", "2026-02-28"),
        ("2026-05-10", "2026-06-10"),
        ("2026-06-10", "2026-07-10"),
        ("2026-07-10", "2026-08-10"),
    ]
    assert view["periods"][1]["starts_at_ms"] == START_MS + 99 * DAY_MS + DAY_MS // 2
    assert [p["status"] for p in view["periods"]] == ["paid"] * 4
    assert len(world.gateway.captures) == 4
    events = [h["event"] for h in view["history"]]
    assert events[-2:] == ["renew", "renew"]
    assert "pause" in events
    assert "resume" in events


async def test_a_resume_before_the_pause_took_effect_moves_nothing(ledger: Ledger) -> None:
    world = World(ledger)
    await world.subs.put_plan(plan(), world.clock.now_ms())
    await world.subs.create(signup("p2"), world.clock.now_ms())
    await world.run()
    await world.subs.pause("p2", world.clock.now_ms())
    assert (await world.subs.resume("p2", world.clock.now_ms())).code is SubCode.APPLIED
    await world.advance_days(29)
    view = await world.subs.view("p2")
    assert view is not None
    assert (view["state"], view["pause_at_ms"]) == ("active", None)
    assert _day(view["next_charge_at_ms"]) == "2026-03-31"
    assert len(world.gateway.captures) == 2


async def test_what_a_pause_refuses_and_a_cancel_while_paused(ledger: Ledger) -> None:
    world = World(ledger)
    await world.subs.put_plan(plan(), world.clock.now_ms())
    await world.subs.create(signup("p3"), world.clock.now_ms())
    await world.subs.create(signup("p4"), world.clock.now_ms())
    await world.run()
    assert (await world.subs.resume("p3", world.clock.now_ms())).code is SubCode.NOT_ALLOWED
    assert (await world.subs.pause("nobody", world.clock.now_ms())).code is SubCode.NOT_FOUND
    await world.subs.cancel("p4", CancelMode.PERIOD_END, world.clock.now_ms())
    assert (await world.subs.pause("p4", world.clock.now_ms())).code is SubCode.NOT_ALLOWED
    await world.subs.pause("p3", world.clock.now_ms())
    await world.advance_days(30)
    assert (await world.subs.cancel("p3", CancelMode.NOW, world.clock.now_ms())).code is (
        SubCode.APPLIED
    )
    sub = await world.subs.read("p3")
    assert sub is not None
    assert sub.state is SubState.CANCELLED
    assert len(world.gateway.captures) == 2


@pytest.mark.slow
async def test_a_real_worker_never_charges_a_paused_membership(
    ledger: Ledger,
    database_url: str,
    redis_url: str,
    sandbox_process: TipmeterProcess,
    tmp_path: Path,
) -> None:
    sandbox = sandbox_process  # its capture log is what was charged
    gateway = HttpGateway(sandbox.base_url)
    subs = Subscriptions(ledger.database, ProcessorRegistry.single(gateway, name="sandbox-http"))
    days_back = 5
    started_ms = SystemClock().now_ms() - days_back * DAY_MS
    daily = plan("daily", period={"unit": "day", "length": 1}, prices={"USD": {"price_minor": 499}})
    await subs.put_plan(daily, started_ms)
    for sid in ("kept", "paused", "pausing"):
        assert (await subs.create(signup(sid, "daily"), started_ms)).code is SubCode.APPLIED
    # The pause is asked for before the worker runs: day 1 is charged, then the pause takes
    # effect at its end, and the four days the worker catches up on are not charged.
    for sid in ("paused", "pausing"):
        assert (await subs.pause(sid, started_ms)).code is SubCode.APPLIED

    async def caught_up() -> bool:
        found = await subs.read("kept")
        paused = await subs.read("pausing")
        return (
            found is not None
            and found.period_no == days_back + 1
            and found.next_action_at_ms > SystemClock().now_ms()
            and paused is not None
            and paused.state is SubState.PAUSED
        )

    env = worker_env(redis_url, sandbox.base_url, database_url)
    worker: subprocess.Popen[bytes] = start_worker(env, tmp_path / "worker.log")
    try:
        await eventually(caught_up, timeout_s=60, what="the worker catches up")
        sub = await subs.read("paused")
        assert sub is not None
        assert sub.state is SubState.PAUSED
        assert sub.next_action_at_ms == 0
    finally:
        worker.terminate()
        worker.wait(30)
    per_sub = Counter(c.idempotency_key.split(":")[1] for c in await gateway.listed_captures())
    assert per_sub == {"kept": days_back + 1, "paused": 1, "pausing": 1}
