"""The sweeper, on a fake clock: every time trigger fires when due, and no trigger is lost."""

from __future__ import annotations

from metering import keys
from metering.clock import FakeClock
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import TabRef
from metering.store import stream_entries
from settlement.config import SettlementConfig
from settlement.ledger.ledger import Ledger
from settlement.queue import schedule_look
from settlement.sandbox import SandboxGateway
from settlement.sweeper import Sweeper
from tests.metering.helpers import tip
from tests.settlement.helpers import FAST, make_worker, open_backed_tab

CONFIG = SettlementConfig(
    idle_timeout_ms=600_000,
    hold_margin_ms=3_600_000,
    cap_grace_ms=120_000,
    recheck_max_ms=300_000,
    requeue_after_ms=60_000,
    orphan_grace_ms=60_000,
)


async def _state(meter: Meter, ref: TabRef) -> TabState:
    tab = await meter.tabs.read(ref)
    assert tab is not None
    return tab.state


async def _score(meter: Meter, ref: TabRef) -> float | None:
    index = keys.tab_index(keys.tab_index_shard(ref.customer))
    score: float | None = await meter.store.client.zscore(
        index, keys.tab_index_member(ref.customer, ref.tab_id)
    )
    return score


async def _queued(meter: Meter) -> list[tuple[bytes, bytes]]:
    entries = stream_entries(await meter.store.client.xrange(keys.settle_queue()))
    return [(f["tab"], f["reason"]) for _, f in entries]


async def test_idle_timeout(meter: Meter, gateway: SandboxGateway, clock: FakeClock) -> None:
    sweeper = Sweeper(meter, CONFIG)
    ref = await open_backed_tab(meter, gateway)
    clock.advance(10_000)
    await meter.tip(ref, tip("t1", 100))  # active now
    clock.advance(CONFIG.idle_timeout_ms - 1)
    report = await sweeper.sweep()
    assert report.looked_at == 1
    assert not report.requested
    assert await _state(meter, ref) is TabState.OPEN
    # The next look is scheduled at the idle deadline, not later.
    assert await _score(meter, ref) == clock.now_ms() + 1
    clock.advance(1)
    report = await sweeper.sweep()
    assert report.requested == {"idle": 1}
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.state, tab.freeze_reason) == (TabState.SETTLING, "idle")
    assert await _queued(meter) == [(ref.tab_id.encode(), b"idle")]


async def test_hold_expiring_within_the_margin(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock
) -> None:
    sweeper = Sweeper(meter, CONFIG)
    result = await meter.tabs.open(
        customer="c1",
        currency="USD",
        cap_minor=1_000,
        auth_ref="auth_x",
        capture_before_ms=clock.now_ms() + CONFIG.hold_margin_ms + 5_000,
    )
    ref = TabRef("c1", result.tab_id)
    clock.advance(4_999)
    assert not (await sweeper.sweep()).requested
    assert await _score(meter, ref) == clock.now_ms() + 1
    clock.advance(1)
    assert (await sweeper.sweep()).requested == {"hold_expiring": 1}


async def test_cap_reached_after_the_grace_unless_raised(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock
) -> None:
    sweeper = Sweeper(meter, CONFIG)
    ref = await open_backed_tab(meter, gateway, cap_minor=500)
    await meter.tip(ref, tip("t1", 500))  # exhausted now
    clock.advance(CONFIG.cap_grace_ms - 1)
    assert not (await sweeper.sweep()).requested
    raised = await meter.tabs.raise_cap(
        ref, cap_minor=800, auth_ref="auth_y", capture_before_ms=clock.now_ms() + 10**9
    )
    assert raised.code.ok
    clock.advance(1)
    assert not (await sweeper.sweep()).requested  # the raise cleared the trigger
    await meter.tip(ref, tip("t2", 300))  # exhausted again
    clock.advance(CONFIG.cap_grace_ms)
    # Unprompted, the sweeper looks again only at its recheck bound...
    assert (await sweeper.sweep()).looked_at == 0
    # ...but the server, which saw the tab run out, asks for a look when the grace ends.
    await schedule_look(meter.store, ref, clock.now_ms())
    assert (await sweeper.sweep()).requested == {"cap_reached": 1}
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.freeze_reason, tab.accrued_minor) == ("cap_reached", 800)


async def test_an_entry_without_a_tab_is_dropped_only_after_the_grace(
    meter: Meter, clock: FakeClock
) -> None:
    sweeper = Sweeper(meter, CONFIG)
    index = keys.tab_index(keys.tab_index_shard("c7"))
    await meter.store.client.zadd(index, {"c7/tab_gone": clock.now_ms()})
    clock.advance(CONFIG.orphan_grace_ms - 1)
    assert (await sweeper.sweep()).dropped_orphans == 0
    assert await meter.store.client.zscore(index, "c7/tab_gone") is not None
    clock.advance(1)
    assert (await sweeper.sweep()).dropped_orphans == 1
    assert await meter.store.client.zcard(index) == 0


async def test_a_frozen_tab_that_was_never_queued_is_queued(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock, ledger: Ledger
) -> None:
    """The process that froze the tab died before queueing it: the sweeper recovers it."""
    sweeper = Sweeper(meter, CONFIG)
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 100))
    assert (await meter.tabs.freeze(ref, FreezeReason.MERCHANT)).code.ok  # no enqueue
    assert (await sweeper.sweep()).requeued == 0  # just frozen: maybe being queued right now
    clock.advance(CONFIG.requeue_after_ms)
    assert (await sweeper.sweep()).requeued == 1
    assert await _queued(meter) == [(ref.tab_id.encode(), b"sweep")]
    assert (await sweeper.sweep()).requeued == 0  # not again before the next bound
    report = await make_worker(meter, gateway, ledger, FAST).run_burst(sweep=False)
    assert report.statuses == {"settled": 1}
    # Settled and done: the next look removes it from the index.
    clock.advance(CONFIG.requeue_after_ms)
    assert (await sweeper.sweep()).removed_done == 1
    assert await _score(meter, ref) is None


async def test_a_settled_tab_with_follow_ups_undone_is_queued_again(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 100))
    await meter.tabs.freeze(ref, FreezeReason.MERCHANT)
    worker = make_worker(meter, gateway, ledger, FAST)
    await worker.settle_tab(ref)
    # As if the worker died after recording the outcome, before its follow-ups.
    await meter.store.client.hdel(keys.tab(ref.customer, ref.tab_id), "followups_done")
    clock.advance(CONFIG.requeue_after_ms)
    report = await Sweeper(meter, CONFIG).sweep()
    assert (report.requeued, report.removed_done) == (1, 0)


async def test_the_sweep_relays_events_a_crashed_server_left_behind(
    meter: Meter, gateway: SandboxGateway
) -> None:
    ref = await open_backed_tab(meter, gateway)
    applied = await meter.tips.apply(ref, tip("t1", 100))  # applied; never relayed
    assert applied.event is not None
    assert (await meter.rooms.read("room1")).events == []
    report = await Sweeper(meter, CONFIG).sweep()
    assert report.relayed_events == 1
    assert [e.event_type for e in (await meter.rooms.read("room1")).events] == ["tip"]


async def test_idle_to_settled_end_to_end_on_the_fake_clock(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 100))
    config = SettlementConfig(
        idle_timeout_ms=CONFIG.idle_timeout_ms, claim_idle_ms=100, gateway_timeout_s=0.05
    )
    worker = make_worker(meter, gateway, ledger, config)
    assert (await worker.run_burst()).statuses == {}
    clock.advance(CONFIG.idle_timeout_ms)
    report = await worker.run_burst()
    assert report.statuses == {"settled": 1}
    assert [c.amount_minor for c in gateway.captures] == [100]


async def test_cap_reached_fires_within_the_recheck_bound_unprompted(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock
) -> None:
    sweeper = Sweeper(meter, CONFIG)
    ref = await open_backed_tab(meter, gateway, cap_minor=500)
    assert not (await sweeper.sweep()).requested  # next look: at most recheck_max_ms away
    await meter.tip(ref, tip("t1", 500))
    clock.advance(CONFIG.recheck_max_ms)
    assert (await sweeper.sweep()).requested == {"cap_reached": 1}
