"""``make bench``: the product's figures, side by side with the in-repo baseline.

Runs on this machine, in one go, each scenario with its own servers on loopback and one private
redis-server: tips acknowledged per second and their latency at 200 connections (product and
baseline, and their ratio), cross-process fan-out latency, 10,000 metered sessions' tick lag,
memory per idle connection. Prints one table and writes it, with the machine it ran on, to
``docs/benchmarks.md`` (between markers, so the analysis around it stays).

    .venv/bin/python -m loadtest.bench            # the full run (a few minutes)
    .venv/bin/python -m loadtest.bench --quick    # seconds, tiny numbers: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

from clients.tickets import Role, mint
from loadtest import procs
from loadtest.generator import closed_loop, percentile
from metering.meter import Meter, open_store
from metering.store import RedisTarget
from server.embedded_redis import RedisServer, free_port

SECRET: Final = "bench-ticket-secret-0123456789abcdefgh"
API_KEY: Final = "bench-api-key-0123456789abcdefghijklmn"
ROOM: Final = "bench-room"
#: The product under load, with per-connection policy limits lifted: the benchmark measures
#: the server's capacity, not its rate limits.
PRODUCT_ENV: Final = {
    "TIPMETER_TICKET_SECRETS": SECRET,
    "TIPMETER_API_KEYS": API_KEY,
    "TIPMETER_TIPS_PER_S_MAX": "10000",
    "TIPMETER_TIPS_BURST_MAX": "100000",
    "TIPMETER_FRAMES_PER_S_MAX": "100000",
    "TIPMETER_TAB_LINES_MAX": "1000000",
    "TIPMETER_CAP_MAX_MINOR": "900000000000",
    "TIPMETER_CONNECTIONS_MAX": "15000",
    "TIPMETER_LOG_LEVEL": "warning",
    "TIPMETER_DRAIN_DELAY_S": "0",
}


@dataclass
class Throughput:
    """A closed-loop run: acknowledged tips per second, latency, and server CPU."""

    tips_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_pct: float
    refused: int


def _ticket(role: Role, subject: str, currency: str = "") -> str:
    now = time.time_ns() // 1_000_000
    return mint(
        SECRET.encode(),
        issuer="tipmeter",
        role=role,
        subject=subject,
        now_ms=now,
        ttl_ms=3_600_000,
        currency=currency,
    )


async def _open_tabs(redis_url: str, customers: list[str]) -> None:
    store = await open_store(RedisTarget(url=redis_url, connections_max=100))
    meter = Meter(store)
    try:
        for customer in customers:
            await meter.tabs.open(
                customer=customer,
                currency="USD",
                cap_minor=1_000_000,
                auth_ref="bench",
                capture_before_ms=2**52,
            )
    finally:
        await meter.aclose()
        await store.close()


def _flush(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()


async def tips_baseline(
    redis_url: str, work: Path, connections: int, seconds: float, warmup_s: float
) -> Throughput:
    """The baseline under ``connections`` closed-loop clients."""
    _flush(redis_url)
    port = free_port()
    child = procs.baseline(redis_url, port, work / "baseline.log")
    try:
        child.wait_listening()
        cpu0 = child.cpu_s()
        tally, window = await closed_loop(
            [f"ws://127.0.0.1:{port}/ws"] * connections,
            room=ROOM,
            seconds=seconds,
            warmup_s=warmup_s,
            welcome=False,
        )
        cpu = (child.cpu_s() - cpu0) / (window + warmup_s) * 100
    finally:
        child.stop()
    return Throughput(
        tally.acked / window,
        percentile(tally.latencies_ms, 0.5),
        percentile(tally.latencies_ms, 0.99),
        cpu,
        tally.refused,
    )


async def tips_product(
    redis_url: str, work: Path, connections: int, seconds: float, warmup_s: float
) -> Throughput:
    """The product under ``connections`` closed-loop viewers, each tipping from its own tab."""
    _flush(redis_url)
    customers = [f"viewer{n}" for n in range(connections)]
    await _open_tabs(redis_url, customers)
    port = free_port()
    child = procs.tipmeter(
        {**PRODUCT_ENV, "TIPMETER_REDIS_URL": redis_url}, port, work / "product.log"
    )
    try:
        child.wait_listening()
        urls = [
            f"ws://127.0.0.1:{port}/ws?ticket={_ticket(Role.VIEWER, c, 'USD')}" for c in customers
        ]
        cpu0 = child.cpu_s()
        tally, window = await closed_loop(
            urls, room=ROOM, seconds=seconds, warmup_s=warmup_s, welcome=True
        )
        cpu = (child.cpu_s() - cpu0) / (window + warmup_s) * 100
    finally:
        child.stop()
    return Throughput(
        tally.acked / window,
        percentile(tally.latencies_ms, 0.5),
        percentile(tally.latencies_ms, 0.99),
        cpu,
        tally.refused,
    )


async def run(quick: bool) -> None:
    """Every scenario, then the report."""
    connections = 20 if quick else 200
    seconds, warmup_s = (2.0, 0.5) if quick else (15.0, 3.0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path("reports") / time.strftime("bench-%Y%m%d-%H%M%S")
        work.mkdir(parents=True, exist_ok=True)
        del tmp
        redis_server = RedisServer(work / "redis", port=free_port(), persistent=False)
        redis_server.start()
        try:
            base = await tips_baseline(redis_server.url, work, connections, seconds, warmup_s)
            print("baseline", base)
            product = await tips_product(redis_server.url, work, connections, seconds, warmup_s)
            print("product", product)
        finally:
            redis_server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: seconds, tiny numbers")
    args = parser.parse_args(argv)
    asyncio.run(run(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
