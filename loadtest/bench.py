"""``make bench``: the product's figures, side by side with the in-repo baseline.

Runs on this machine, in one go, each scenario with its own servers on loopback and one private
redis-server: tips acknowledged per second and their latency at 200 connections (product and
baseline, and their ratio), cross-process fan-out latency, 10,000 metered sessions' tick lag,
memory per idle connection, settlement throughput, Redis memory after 100,000 settled tabs once
their retention has passed. Prints one table and writes it, with the machine it ran on, to
``docs/benchmarks.md`` (between markers, so the analysis around it stays).

    .venv/bin/python -m loadtest.bench            # the full run (about forty minutes)
    .venv/bin/python -m loadtest.bench --quick    # seconds, tiny numbers: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

from clients.tickets import Role, mint
from loadtest import bench_retention, bench_sessions, bench_settle, procs
from loadtest.generator import (
    closed_loop,
    fan_out,
    hold_idle,
    percentile,
    tip_steadily,
    watch_room,
)
from metering.meter import Meter, open_store
from metering.store import RedisTarget
from server.embedded_postgres import PostgresServer
from server.embedded_redis import RedisServer, free_port
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger

SECRET: Final = "bench-ticket-secret-0123456789abcdefgh"
API_KEY: Final = "bench-api-key-0123456789abcdefghijklmn"
ROOM: Final = "bench-room"
#: How long the benchmark's replica may take to link to its primary.
REPLICA_LINK_TIMEOUT_S: Final = 20.0
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
    # The in-process sandbox needs the in-process worker (the tabs here are never settled).
    "TIPMETER_WORKER": "on",
}


def product_env(redis_url: str, database_url: str) -> dict[str, str]:
    """The product's environment on the benchmark's Redis and ledger database."""
    return {**PRODUCT_ENV, "TIPMETER_REDIS_URL": redis_url, "TIPMETER_DATABASE_URL": database_url}


@dataclass
class Throughput:
    """A closed-loop run: acknowledged tips per second, latency, and server CPU."""

    tips_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_pct: float
    redis_cpu_pct: float
    refused: int


def _ticket(role: Role, subject: str, currency: str = "") -> str:
    now = time.time_ns() // 1_000_000
    return mint(
        SECRET.encode(),
        issuer="tipmeter",
        role=role,
        subject=subject,
        now_ms=now,
        ttl_ms=300_000,  # the longest lifetime a server accepts by default
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


def _redis_cpu_s(redis_url: str) -> float:
    """CPU seconds (user + system) the redis-server has used so far."""
    with redis.Redis.from_url(redis_url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _closed_loop_on(
    child: procs.Child,
    redis_url: str,
    urls: list[str],
    *,
    welcome: bool,
    seconds: float,
    warmup_s: float,
) -> Throughput:
    """Run the closed loop against ``child`` (stopped afterwards) and measure it."""
    try:
        child.wait_listening()
        cpu0, redis0 = child.cpu_s(), _redis_cpu_s(redis_url)
        tally, window = await closed_loop(
            urls, room=ROOM, seconds=seconds, warmup_s=warmup_s, welcome=welcome
        )
        cpu = (child.cpu_s() - cpu0) / (window + warmup_s) * 100
        redis_cpu = (_redis_cpu_s(redis_url) - redis0) / (window + warmup_s) * 100
    finally:
        child.stop()
    return Throughput(
        tally.acked / window,
        percentile(tally.latencies_ms, 0.5),
        percentile(tally.latencies_ms, 0.99),
        cpu,
        redis_cpu,
        tally.refused,
    )


async def tips_baseline(
    redis_url: str, work: Path, connections: int, seconds: float, warmup_s: float
) -> Throughput:
    """The baseline under ``connections`` closed-loop clients."""
    _flush(redis_url)
    port = free_port()
    child = procs.baseline(redis_url, port, work / "baseline.log")
    urls = [f"ws://127.0.0.1:{port}/ws"] * connections
    return await _closed_loop_on(
        child, redis_url, urls, welcome=False, seconds=seconds, warmup_s=warmup_s
    )


async def tips_product(
    redis_url: str,
    database_url: str,
    work: Path,
    connections: int,
    seconds: float,
    warmup_s: float,
    extra_env: Mapping[str, str] | None = None,
) -> Throughput:
    """The product under ``connections`` closed-loop viewers, each tipping from its own tab
    (``extra_env``: settings of this run, e.g. the replicated acknowledgement)."""
    _flush(redis_url)
    customers = [f"viewer{n}" for n in range(connections)]
    await _open_tabs(redis_url, customers)
    port = free_port()
    env = {**product_env(redis_url, database_url), **(extra_env or {})}
    child = procs.tipmeter(env, port, work / "product.log")
    urls = [f"ws://127.0.0.1:{port}/ws?ticket={_ticket(Role.VIEWER, c, 'USD')}" for c in customers]
    return await _closed_loop_on(
        child, redis_url, urls, welcome=True, seconds=seconds, warmup_s=warmup_s
    )


@dataclass
class Delivery:
    """Cross-process fan-out: a tip on process A reaching a model's console on process B."""

    offered_tips_per_s: float
    acked_tips_per_s: float
    p50_ms: float
    p99_ms: float
    delivered: int
    sent: int


async def fan_out_product(
    redis_url: str,
    database_url: str,
    work: Path,
    tips_per_s: float,
    viewers: int,
    seconds: float,
    warmup_s: float,
) -> Delivery:
    """Viewers on process A tip one room at ``tips_per_s`` (open loop); the room's model follows
    it on process B. Latency: from the viewer's send to the event's arrival at the model."""
    _flush(redis_url)
    customers = [f"fan{n}" for n in range(viewers)]
    await _open_tabs(redis_url, customers)
    env = product_env(redis_url, database_url)
    a = procs.tipmeter(env, free_port(), work / "fanout-a.log")
    b = procs.tipmeter(env, free_port(), work / "fanout-b.log")
    try:
        a.wait_listening()
        b.wait_listening()
        run = await fan_out(
            [
                f"ws://127.0.0.1:{a.port}/ws?ticket={_ticket(Role.VIEWER, c, 'USD')}"
                for c in customers
            ],
            f"ws://127.0.0.1:{b.port}/ws?ticket={_ticket(Role.MODEL, ROOM)}",
            room=ROOM,
            tips_per_s=tips_per_s,
            seconds=seconds,
            warmup_s=warmup_s,
        )
    finally:
        a.stop()
        b.stop()
    return Delivery(
        tips_per_s,
        run.acked / (seconds + warmup_s),
        percentile(run.delivered_ms, 0.5),
        percentile(run.delivered_ms, 0.99),
        len(run.delivered_ms),
        run.sent,
    )


@dataclass
class Delivered:
    """What showing room events to viewers costs the process that holds the viewers."""

    watchers: int
    frames: int
    cpu_s: float

    @property
    def us_per_frame(self) -> float:
        """Server CPU per event frame delivered to one viewer, in µs."""
        return self.cpu_s / self.frames * 1e6 if self.frames else 0.0


async def delivery_cost(
    redis_url: str,
    database_url: str,
    work: Path,
    watchers: int,
    tips_per_s: float,
    seconds: float,
) -> Delivered:
    """``watchers`` viewers on process B follow a room that one viewer on process A tips at
    ``tips_per_s``; B's CPU over the event frames its viewers received."""
    _flush(redis_url)
    await _open_tabs(redis_url, ["payer"])
    env = product_env(redis_url, database_url)
    a = procs.tipmeter(env, free_port(), work / "delivery-a.log")
    b = procs.tipmeter(env, free_port(), work / "delivery-b.log")
    try:
        a.wait_listening()
        b.wait_listening()
        sockets, counter = await watch_room(
            [
                f"ws://127.0.0.1:{b.port}/ws?ticket={_ticket(Role.VIEWER, f'watcher{n}', 'USD')}"
                for n in range(watchers)
            ],
            ROOM,
        )
        await asyncio.sleep(1.0)
        counter[0] = 0
        cpu0 = b.cpu_s()
        await tip_steadily(
            f"ws://127.0.0.1:{a.port}/ws?ticket={_ticket(Role.VIEWER, 'payer', 'USD')}",
            ROOM,
            tips_per_s,
            seconds,
        )
        cpu = b.cpu_s() - cpu0
        frames = counter[0]
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    finally:
        a.stop()
        b.stop()
    return Delivered(watchers, frames, cpu)


@dataclass
class Idle:
    """Memory an idle connection costs a server process."""

    connections: int
    rss_before_mib: float
    rss_after_mib: float

    @property
    def kib_per_connection(self) -> float:
        """Resident memory per connection, in KiB."""
        return (self.rss_after_mib - self.rss_before_mib) * 1024 / self.connections


async def _idle(child: procs.Child, urls: list[str], welcome: bool, warm: int) -> Idle:
    """Open ``warm`` connections (so the code paths are loaded), then the rest; measure."""
    child.wait_listening()
    first = await hold_idle(urls[:warm], welcome=welcome)
    await asyncio.sleep(1.0)
    before = child.rss_bytes()
    rest = await hold_idle(urls[warm:], welcome=welcome)
    await asyncio.sleep(2.0)
    after = child.rss_bytes()
    await asyncio.gather(*(ws.close() for ws in (*first, *rest)), return_exceptions=True)
    return Idle(len(rest), before / 2**20, after / 2**20)


async def idle_product(redis_url: str, database_url: str, work: Path, connections: int) -> Idle:
    """``connections`` viewers, each with an open tab (so each follows its tab's changes), idle."""
    _flush(redis_url)
    customers = [f"idle{n}" for n in range(connections)]
    await _open_tabs(redis_url, customers)
    child = procs.tipmeter(product_env(redis_url, database_url), free_port(), work / "idle.log")
    try:
        urls = [
            f"ws://127.0.0.1:{child.port}/ws?ticket={_ticket(Role.VIEWER, c, 'USD')}"
            for c in customers
        ]
        return await _idle(child, urls, welcome=True, warm=min(100, connections // 10))
    finally:
        child.stop()


async def idle_baseline(redis_url: str, work: Path, connections: int) -> Idle:
    """The baseline's cost of an idle connection (its bare WebSocket)."""
    child = procs.baseline(redis_url, free_port(), work / "baseline-idle.log")
    try:
        urls = [f"ws://127.0.0.1:{child.port}/ws"] * connections
        return await _idle(child, urls, welcome=False, warm=min(100, connections // 10))
    finally:
        child.stop()


@dataclass
class Plan:
    """The sizes of one run."""

    connections: int
    seconds: float
    warmup_s: float
    fan_out_tips_per_s: float
    fan_out_viewers: int
    sessions: int
    session_seconds: float
    idle_connections: int
    settle_tabs: int
    watchers: int
    watched_tips_per_s: float
    retention_lifecycles: int
    retention_batch: int


FULL: Final = Plan(
    200, 15.0, 3.0, 1_000.0, 100, 10_000, 30.0, 10_000, 5_000, 500, 50.0, 100_000, 1_000
)
QUICK: Final = Plan(10, 1.0, 0.3, 50.0, 5, 50, 2.0, 50, 50, 10, 10.0, 200, 50)


@dataclass
class Report:
    """Every figure of one run."""

    plan: Plan
    baseline: Throughput
    product: Throughput
    replicated: Throughput
    fan_out: Delivery
    delivered: Delivered
    sessions: bench_sessions.Figures
    idle_product: Idle
    idle_baseline: Idle
    settle: bench_settle.Figures
    retention: bench_retention.Figures


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def table(r: Report) -> str:
    """The report as one Markdown table: figure, product, baseline, ratio, target."""
    p, b = r.product, r.baseline
    rows = [
        ("figure", "tipmeter", "baseline", "ratio", "target"),
        ("---", "---:", "---:", "---:", "---"),
        (
            f"tips/s acknowledged, {r.plan.connections} connections",
            f"{p.tips_per_s:,.0f}",
            f"{b.tips_per_s:,.0f}",
            _ratio(p.tips_per_s, b.tips_per_s),
            "≥ 0.80×",
        ),
        ("ack latency p50", f"{p.p50_ms:.1f} ms", f"{b.p50_ms:.1f} ms", "", ""),
        ("ack latency p99", f"{p.p99_ms:.1f} ms", f"{b.p99_ms:.1f} ms", "", "≤ 50 ms"),
        (
            "tips/s, replicated ack (`TIPMETER_ACK_REPLICAS=1`, a local replica; "
            f"p99 {r.replicated.p99_ms:.1f} ms; ratio to the ack on the primary)",
            f"{r.replicated.tips_per_s:,.0f}",
            "",
            _ratio(r.replicated.tips_per_s, p.tips_per_s),
            "",
        ),
        (
            "server CPU (share of one core)",
            f"{p.server_cpu_pct:.0f} %",
            f"{b.server_cpu_pct:.0f} %",
            "",
            "",
        ),
        (
            "server CPU per acknowledged tip",
            f"{_us_per_tip(p.server_cpu_pct, p):.0f} µs",
            f"{_us_per_tip(b.server_cpu_pct, b):.0f} µs",
            _ratio(_us_per_tip(p.server_cpu_pct, p), _us_per_tip(b.server_cpu_pct, b)),
            "",
        ),
        (
            "Redis CPU per acknowledged tip",
            f"{_us_per_tip(p.redis_cpu_pct, p):.0f} µs",
            f"{_us_per_tip(b.redis_cpu_pct, b):.0f} µs",
            _ratio(_us_per_tip(p.redis_cpu_pct, p), _us_per_tip(b.redis_cpu_pct, b)),
            "",
        ),
        (
            f"fan-out A → B p99 at {r.fan_out.offered_tips_per_s:,.0f} tips/s "
            f"({r.fan_out.delivered:,} delivered)",
            f"{r.fan_out.p99_ms:.1f} ms (p50 {r.fan_out.p50_ms:.1f})",
            "",
            "",
            "≤ 100 ms",
        ),
        (
            f"server CPU per room event shown to a viewer ({r.delivered.watchers} viewers, "
            f"{r.delivered.frames:,} frames)",
            f"{r.delivered.us_per_frame:.1f} µs",
            "",
            "",
            "",
        ),
        (
            f"{r.sessions.sessions:,} metered sessions: tick lag p99",
            f"{r.sessions.lag_p99_ms:.1f} ms",
            "",
            "",
            "≤ 100 ms",
        ),
        (
            f"{r.sessions.sessions:,} metered sessions: CPU of the process / of Redis",
            f"{r.sessions.cpu_process_pct:.0f} % / {r.sessions.cpu_redis_pct:.0f} %",
            "",
            "",
            "",
        ),
        (
            f"RSS per idle connection, {r.plan.idle_connections:,} connections",
            f"{r.idle_product.kib_per_connection:.1f} KiB",
            f"{r.idle_baseline.kib_per_connection:.1f} KiB",
            _ratio(r.idle_product.kib_per_connection, r.idle_baseline.kib_per_connection),
            "≤ 30 KiB",
        ),
        (
            f"settlement, one worker, {r.settle.tabs:,} tabs (HTTP sandbox)",
            f"{r.settle.tabs_per_s:,.0f} tabs/s",
            "",
            "",
            "≥ 500 tabs/s",
        ),
        _retention_row(r.retention),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def _retention_row(f: bench_retention.Figures) -> tuple[str, str, str, str, str]:
    """Redis memory after the run's settled tabs, next to an empty server's."""
    return (
        f"Redis memory after {f.lifecycles:,} settled tabs, retention passed "
        f"(at {f.halfway:,}: {f.halfway_bytes / 2**20:.2f} MiB)",
        f"{f.after_bytes / 2**20:.2f} MiB",
        f"{f.empty_bytes / 2**20:.2f} MiB (empty server)",
        _ratio(f.after_bytes, f.empty_bytes),
        "flat in the number of tabs",
    )


def _us_per_tip(cpu_pct: float, t: Throughput) -> float:
    return cpu_pct / 100 / t.tips_per_s * 1e6 if t.tips_per_s else 0.0


def machine() -> str:
    """One line naming the machine the run was on."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    version = next((w.split("=")[1] for w in redis_version if w.startswith("v=")), "?")
    return (
        f"{os.cpu_count()} × {cpu}, {mem_gib:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, redis-server {version}"
    )


def write_report(text: str, path: Path) -> None:
    """Replace the text between the markers of ``path`` (create the file if it is missing)."""
    block = f"{BEGIN}\n{text}{END}"
    if path.exists():
        current = path.read_text()
        if BEGIN in current and END in current:
            head, _, rest = current.partition(BEGIN)
            _, _, tail = rest.partition(END)
            path.write_text(head + block + tail)
            return
    path.write_text(f"# Benchmarks\n\n{block}\n")


BEGIN: Final = "<!-- bench:begin -->"
END: Final = "<!-- bench:end -->"


async def run(plan: Plan, work: Path) -> Report:
    """Every scenario, one after the other (they would steal each other's CPU)."""
    redis_server = RedisServer(work / "redis", port=free_port(), persistent=False)
    postgres = PostgresServer(work, ephemeral=True, durable=False)
    redis_server.start()
    try:
        postgres.start()
        db = postgres.url
        await (await Ledger.open(DatabaseConfig(url=db), migrate_schema=True)).close()
        url = redis_server.url
        say = functools.partial(print, flush=True)
        say("tips: baseline …")
        base = await tips_baseline(url, work, plan.connections, plan.seconds, plan.warmup_s)
        say("tips: tipmeter …")
        product = await tips_product(url, db, work, plan.connections, plan.seconds, plan.warmup_s)
        say("tips: tipmeter, replicated acknowledgement …")
        with _replica_of(redis_server, work):
            replicated = await tips_product(
                url,
                db,
                work,
                plan.connections,
                plan.seconds,
                plan.warmup_s,
                {"TIPMETER_ACK_REPLICAS": "1"},
            )
        say("fan-out …")
        fan = await fan_out_product(
            url,
            db,
            work,
            plan.fan_out_tips_per_s,
            plan.fan_out_viewers,
            plan.seconds,
            plan.warmup_s,
        )
        say("delivery to viewers …")
        delivered = await delivery_cost(
            url, db, work, plan.watchers, plan.watched_tips_per_s, plan.seconds / 2
        )
        say("idle connections …")
        idle_p = await idle_product(url, db, work, plan.idle_connections)
        idle_b = await idle_baseline(url, work, plan.idle_connections)
        say("sessions …")
        _flush(url)
        sessions = await bench_sessions.run(plan.sessions, plan.session_seconds, url)
    finally:
        postgres.stop()
        redis_server.stop()
    say("settlement …")
    settle = await bench_settle.run_with_own_redis(plan.settle_tabs)
    say("retention …")
    retention = await bench_retention.run_with_own_servers(
        plan.retention_lifecycles, plan.retention_batch
    )
    return Report(
        plan, base, product, replicated, fan, delivered, sessions, idle_p, idle_b, settle, retention
    )


@contextlib.contextmanager
def _replica_of(primary: RedisServer, work: Path) -> Iterator[RedisServer]:
    """A replica of ``primary`` on loopback, linked and in sync, for the block."""
    replica = RedisServer(work / "redis-replica", port=free_port(), persistent=False)
    replica.start()
    try:
        with redis.Redis(port=replica.tcp_port) as client:
            client.replicaof("127.0.0.1", primary.tcp_port)
            deadline = time.monotonic() + REPLICA_LINK_TIMEOUT_S
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("the benchmark's replica did not link to its primary")
                time.sleep(0.05)
        yield replica
    finally:
        replica.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write it to docs/benchmarks.md (full runs only)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: seconds, tiny numbers")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the Markdown file to write the table into (default: docs/benchmarks.md for a "
        "full run, nothing for --quick)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    work = Path("reports") / time.strftime("bench-%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(run(plan, work))
    text = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}"
        f"{' (quick smoke run: tiny numbers, not figures)' if args.quick else ''}.\n\n"
        + table(report)
    )
    print()
    print(text)
    output = args.output if args.output is not None else (None if args.quick else DOC)
    if output is not None:
        write_report(text, output)
        print(f"written to {output}")
    (work / "report.md").write_text(text)
    return 0


DOC: Final = Path("docs/benchmarks.md")


if __name__ == "__main__":
    raise SystemExit(main())
