"""Three clients with their own connections race 1,000 tips each at one tab's cap.

The cap fits exactly N tips. Tip ids overlap between the clients (every client also sends ids
that the others send), so the same tip arrives several times, concurrently. Afterwards exactly N
distinct tips are applied, accrued equals the cap, no id is applied twice, and every duplicate
answer carries the original result.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict

import pytest

from metering.clock import SystemClock
from metering.meter import Meter, open_store
from metering.outcomes import Code, TabRef, TipResult
from metering.store import RedisTarget
from tests.metering.helpers import HOLD_MS, tip

CLIENTS = 3
TIPS_PER_CLIENT = 1_000
AMOUNT = 100
FITS = 1_234  # the cap holds exactly this many tips
IN_FLIGHT_PER_CLIENT = 64
SEED = 20261122


def _plan(seed: int) -> list[list[str]]:
    """Each client's tip ids: 2,400 distinct ids, 600 of them sent twice (by different clients)."""
    rng = random.Random(seed)
    ids = [f"tip-{n}" for n in range(CLIENTS * TIPS_PER_CLIENT - 600)]
    sends = ids + rng.sample(ids, 600)
    rng.shuffle(sends)
    return [sends[i::CLIENTS] for i in range(CLIENTS)]


async def _client(target: RedisTarget, ref: TabRef, tip_ids: list[str]) -> list[TipResult]:
    store = await open_store(target)
    meter = Meter(store, clock=SystemClock())
    gate = asyncio.Semaphore(IN_FLIGHT_PER_CLIENT)

    async def send(tip_id: str) -> TipResult:
        async with gate:
            return await meter.tip(ref, tip(tip_id, AMOUNT))

    try:
        return await asyncio.gather(*(send(t) for t in tip_ids))
    finally:
        await meter.aclose()
        await store.close()


async def _race(target: RedisTarget) -> None:
    setup_store = await open_store(target)
    setup = Meter(setup_store, clock=SystemClock())
    opened = await setup.tabs.open(
        customer="racer",
        currency="USD",
        cap_minor=AMOUNT * FITS,
        auth_ref="a",
        capture_before_ms=SystemClock().now_ms() + HOLD_MS,
    )
    ref = TabRef("racer", opened.tab_id)
    plans = _plan(SEED)
    try:
        per_client = await asyncio.gather(*(_client(target, ref, ids) for ids in plans))
        results = [r for client in per_client for r in client]
        codes = Counter(r.code for r in results)
        applied = [r for r in results if r.code is Code.APPLIED]
        assert len(applied) == FITS, f"seed {SEED}: {codes}"
        assert len({r.tip_id for r in applied}) == FITS, f"seed {SEED}: an id applied twice"
        assert set(codes) <= {Code.APPLIED, Code.DUPLICATE, Code.OVER_CAP}, codes
        seq_of = {r.tip_id: r.seq for r in applied}
        for r in results:
            if r.code is Code.DUPLICATE:
                assert r.seq == seq_of[r.tip_id], f"seed {SEED}: duplicate of {r.tip_id} differs"
        assert sorted(seq_of.values()) == list(range(1, FITS + 1))

        tab = await setup.tabs.read(ref)
        assert tab is not None
        assert tab.accrued_minor == tab.cap_minor == AMOUNT * FITS
        assert len(tab.lines) == FITS
        assert sum(line.amount_minor for line in tab.lines) == tab.accrued_minor
        # Every applied tip reached the room exactly once.
        events: dict[str, int] = defaultdict(int)
        cursor = None
        while True:
            page = await setup.rooms.read("room1", after=cursor, count=1_000)
            if not page.events:
                break
            for event in page.events:
                events[event.data["tip_id"]] += 1
            cursor = page.events[-1].event_id
        assert set(events) == set(seq_of)
        assert set(events.values()) == {1}
    finally:
        await setup.aclose()
        await setup_store.close()


async def test_race_on_one_node(redis_url: str) -> None:
    await _race(RedisTarget(url=redis_url))


@pytest.mark.slow
async def test_race_on_a_cluster(cluster_nodes: tuple[str, ...]) -> None:
    await _race(RedisTarget(cluster_nodes=cluster_nodes))
