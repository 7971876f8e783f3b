"""Benchmark: N metered sessions billed every second by one process.

Starts its own redis-server (same machine), opens N tabs and starts one session on each, runs
the server's real :class:`server.scheduler.Scheduler` for a while, and prints ticks per second,
tick lag (how late each tick started) and tick duration percentiles, and the CPU used by this
process and by Redis, as a share of one core. Then it checks the money: every session billed
about the elapsed seconds, and every tab's accrued amount equals its session's amount.

    .venv/bin/python -m loadtest.bench_sessions --sessions 10000 --seconds 30

Target on the 2-core reference machine: 10,000 sessions at p99 tick lag <= 100 ms, using at
most half of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metering.meter import Meter, open_store
from metering.outcomes import Code, TabRef
from metering.sessions import Rate, SessionKind, SessionRef
from metering.store import RedisTarget
from server.embedded_redis import RedisServer, free_port
from server.metrics import Metrics
from server.scheduler import Scheduler

ROOMS = 100
CONCURRENCY = 200


@dataclass
class Figures:
    """What one run measured."""

    sessions: int
    seconds: float
    ticks: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    tick_p50_ms: float
    tick_p99_ms: float
    cpu_process_pct: float
    cpu_redis_pct: float
    billed_error_s_max: int

    def table(self) -> str:
        """The figures as Markdown rows."""
        header = (
            "| sessions | ticks/s | tick lag p50 | tick lag p99 | tick lag max | tick p50 "
            "| tick p99 | CPU (process) | CPU (Redis) |"
        )
        row = (
            f"| {self.sessions:,} | {self.ticks / self.seconds:.2f} | {self.lag_p50_ms:.1f} ms "
            f"| {self.lag_p99_ms:.1f} ms | {self.lag_max_ms:.1f} ms | {self.tick_p50_ms:.1f} ms "
            f"| {self.tick_p99_ms:.1f} ms | {self.cpu_process_pct:.0f} % "
            f"| {self.cpu_redis_pct:.0f} % |"
        )
        return "\n".join([header, "|" + " --- |" * 9, row])


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _redis_cpu_s(meter: Meter) -> float:
    info: dict[str, Any] = await meter.store.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(sessions: int, seconds: float, redis_url: str) -> Figures:
    """Open ``sessions`` tabs, start a session on each, bill them for ``seconds``; measure."""
    store = await open_store(RedisTarget(url=redis_url, connections_max=CONCURRENCY))
    meter = Meter(store)
    metrics = Metrics()
    lags: list[float] = []
    durations: list[float] = []

    def record(lag_s: float, duration_s: float) -> None:
        lags.append(lag_s)
        durations.append(duration_s)

    scheduler = Scheduler(meter, metrics, on_tick=record)
    rooms = [f"room{n}" for n in range(ROOMS)]
    for room in rooms:
        await meter.sessions.set_rates(room, {SessionKind.PRIVATE: Rate(600)})
        scheduler.models[f"model-{room}"] = room
    await meter.sessions.mark_present([(room, f"model-{room}") for room in rooms], 60_000)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def start(n: int) -> SessionRef:
        customer = f"bench{n}"
        async with gate:
            opened = await meter.tabs.open(
                customer=customer,
                currency="USD",
                cap_minor=1_000_000,
                auth_ref="bench",
                capture_before_ms=2**52,
            )
            ref = TabRef(customer, opened.tab_id)
            result = await meter.sessions.start(
                ref,
                session_id=f"show{n}",
                room=rooms[n % ROOMS],
                kind="private",
                currency="USD",
                owner=scheduler.owner,
            )
        if result.code is not Code.APPLIED:
            raise RuntimeError(f"session {n} did not start: {result.code}")
        return SessionRef(customer, f"show{n}", opened.tab_id)

    # As in the server: the scheduler runs while sessions start, each billed from its start on.
    scheduler.start()

    async def start_and_own(n: int) -> SessionRef:
        ref = await start(n)
        scheduler.add(ref, rooms[n % ROOMS], None)
        return ref

    refs = await asyncio.gather(*(start_and_own(n) for n in range(sessions)))
    await asyncio.sleep(2 * scheduler.tick_ms / 1000)  # let every session see a full tick
    lags.clear()
    durations.clear()
    cpu_before = time.process_time()
    redis_before = await _redis_cpu_s(meter)
    began = time.monotonic()
    await asyncio.sleep(seconds)
    await scheduler.stop()
    elapsed = time.monotonic() - began
    cpu_process = (time.process_time() - cpu_before) / elapsed * 100
    cpu_redis = (await _redis_cpu_s(meter) - redis_before) / elapsed * 100
    # The money: each session billed through its current second, and accrued = its amount.
    running = sum(1 for ref in refs if (ref.customer, ref.session_id) in scheduler.owned)
    if running != sessions:
        raise RuntimeError(f"only {running} of {sessions} sessions still run")
    worst = 0
    for ref in refs[:: max(1, sessions // 200)]:
        view = await meter.sessions.read(ref.customer, ref.session_id)
        tab = await meter.tabs.read(TabRef(ref.customer, ref.tab_id))
        if view is None or tab is None or tab.accrued_minor != view.amount_minor:
            raise RuntimeError(f"conservation broken for {ref}")
        expected = int(time.time() - view.started_at_ms / 1000) + 1
        worst = max(worst, abs(expected - view.billed_s) if view.state == "running" else 0)
    await meter.aclose()
    await store.close()
    return Figures(
        sessions=sessions,
        seconds=elapsed,
        ticks=len(lags),
        lag_p50_ms=_percentile(lags, 0.50) * 1000,
        lag_p99_ms=_percentile(lags, 0.99) * 1000,
        lag_max_ms=max(lags, default=0.0) * 1000,
        tick_p50_ms=_percentile(durations, 0.50) * 1000,
        tick_p99_ms=_percentile(durations, 0.99) * 1000,
        cpu_process_pct=cpu_process,
        cpu_redis_pct=cpu_redis,
        billed_error_s_max=worst,
    )


async def run_with_own_redis(sessions: int, seconds: float) -> Figures:
    """:func:`run` against a private redis-server started (and stopped) here."""
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp), port=free_port(), persistent=False)
        redis.start()
        try:
            return await run(sessions, seconds, redis.url)
        finally:
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    figures = asyncio.run(run_with_own_redis(args.sessions, args.seconds))
    print(figures.table())
    print(
        f"\nbilled seconds off by at most {figures.billed_error_s_max} s from elapsed (+1 prepaid)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
