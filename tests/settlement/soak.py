"""Settlement soak: hundreds of kill -9 of worker processes under load, then the invariants.

Run with ``make soak`` (or ``python -m tests.settlement.soak --kills 200 --seed N``). It starts
a private redis-server and a ``tipmeter sandbox-gateway`` (with a little latency on every call,
so that kills land while calls are in flight), keeps opening, spending on and settling tabs,
and meanwhile runs two ``tipmeter worker`` processes that it kills at random moments (and some
of which kill themselves at a random crash point), restarting each. When the kills stop, burst
workers finish what is left, and the figures are printed:

- double captures in the sandbox's capture log (must be 0);
- lost accrued minor units (conservation, exact: must be 0);
- tabs not terminal once the kills stopped and the queue was drained (must be 0).

Everything random comes from one seed, printed first and on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Final

from metering.clock import SystemClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter, open_store
from metering.outcomes import TabRef
from metering.scripts import METERING_SCRIPTS
from metering.store import RedisTarget
from server.embedded_postgres import PostgresServer
from server.embedded_redis import free_port
from settlement.config import Checkpoint
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox_http import HttpGateway
from settlement.scripts import SETTLEMENT_SCRIPTS
from settlement.worker import Worker
from tests.settlement.crash_support import (
    TIPMETER,
    Findings,
    burst,
    check_invariants,
    open_tabs,
    start_worker,
    worker_env,
)
from tests.support.redis_procs import start_standalone

#: Worker processes running at once during the kills.
WORKERS: Final = 2
#: How long the sandbox gateway process may take to answer (a loaded machine starts slowly).
SANDBOX_START_S_MAX: Final = 60
#: How long one draining burst may take (it settles every tab the kills left behind).
DRAIN_BURST_S_MAX: Final = 600
#: Bursts after the kills, at most, to drain what the killed workers left.
DRAIN_BURSTS_MAX: Final = 30
#: Tabs the load keeps opening per wave.
WAVE_TABS: Final = 10


async def _load(
    meter: Meter, gateway: HttpGateway, rng: random.Random, stop: asyncio.Event, refs: list[TabRef]
) -> None:
    """Open, spend on and settle tabs in waves until ``stop`` is set (a wave always completes,
    so no tab is left open)."""
    wave = 0
    while not stop.is_set():
        opened = await open_tabs(
            meter, gateway, WAVE_TABS, rng, prefix=f"w{wave}c", decline_share=0.1
        )
        refs.extend(opened)
        for ref in opened:
            reason = rng.choice([FreezeReason.MERCHANT, FreezeReason.CUSTOMER_ENDED])
            await request_settlement(meter, ref, reason)
        wave += 1
        await asyncio.sleep(rng.uniform(0.05, 0.3))


async def _throughput(
    meter: Meter, gateway: HttpGateway, ledger: Ledger, tabs: int, seed: int
) -> tuple[float, list[TabRef]]:
    """Settle ``tabs`` frozen tabs with one in-process burst worker; return tabs per second
    (and the tabs, which the invariants check with the others)."""
    refs = await open_tabs(meter, gateway, tabs, random.Random(seed), prefix="tp")
    for ref in refs:
        await request_settlement(meter, ref, FreezeReason.MERCHANT)
    worker = Worker(meter, gateway, ledger=ledger, consumer="throughput")
    started = time.perf_counter()
    report = await worker.run_burst(sweep=False)
    elapsed = time.perf_counter() - started
    if report.acked != tabs:
        raise AssertionError(f"the throughput burst settled {report.acked} of {tabs}: {report}")
    return tabs / elapsed, refs


def _start_sandbox(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([TIPMETER, "sandbox-gateway"], env=env, stdout=log, stderr=log)


async def soak(
    kills: int, seed: int, workdir: Path, throughput_tabs: int, latency_ms: int
) -> Findings:
    """Run the soak; return what the invariants found."""
    rng = random.Random(seed)
    redis = start_standalone(workdir)
    postgres = PostgresServer(workdir, ephemeral=True, durable=False)
    postgres.start()
    database_url = postgres.url
    ledger = await Ledger.open(DatabaseConfig(url=database_url), migrate_schema=True)
    sandbox_port = free_port()
    sandbox_log = (workdir / "sandbox.log").open("ab")
    # The sandbox process is the processor itself: none of the workers' gateway settings.
    gateway_settings = ("TIPMETER_GATEWAY", "TIPMETER_GATEWAY_URL")
    sandbox_env = {
        k: v
        for k, v in worker_env(redis.url, "", database_url).items()
        if k not in gateway_settings
    } | {
        "TIPMETER_SANDBOX_PORT": str(sandbox_port),
        # A journal of its own for this run (the sandbox keeps its record across restarts).
        "TIPMETER_DATA_DIR": str(workdir / "sandbox-data"),
        "TIPMETER_SANDBOX_LATENCY_MS": str(latency_ms),
    }
    sandbox = _start_sandbox(sandbox_env, sandbox_log)
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    store = await open_store(RedisTarget(url=redis.url), (*METERING_SCRIPTS, *SETTLEMENT_SCRIPTS))
    meter = Meter(store, clock=SystemClock())
    gateway = HttpGateway(sandbox_url, timeout_s=5)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + SANDBOX_START_S_MAX
        while True:
            with contextlib.suppress(Exception):
                await gateway.capture_log()
                break
            if sandbox.poll() is not None or time.monotonic() > deadline:
                sandbox_log.flush()
                raise RuntimeError(
                    "the sandbox gateway did not start:\n"
                    + (workdir / "sandbox.log").read_text(errors="replace")[-2000:]
                )
            await asyncio.sleep(0.05)
        env = worker_env(redis.url, sandbox_url, database_url)
        refs: list[TabRef] = []
        load_refs: list[TabRef] = []
        if throughput_tabs:
            rate, settled = await _throughput(meter, gateway, ledger, throughput_tabs, seed)
            refs.extend(settled)
            print(
                f"burst throughput: {rate:.0f} tabs/s ({throughput_tabs} tabs, one worker, "
                f"HTTP sandbox with {latency_ms} ms latency per call)"
            )
        stop = asyncio.Event()
        load = asyncio.create_task(_load(meter, gateway, rng, stop, load_refs))
        log_path = workdir / "workers.log"
        killed = self_killed = 0
        started = time.monotonic()
        while killed + self_killed < kills:
            while len(workers) < WORKERS:
                crash_at = rng.choice(list(Checkpoint)) if rng.random() < 0.25 else None
                workers.append(start_worker(env, log_path, crash_at))
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            for worker in [w for w in workers if w.poll() is not None]:
                workers.remove(worker)
                if worker.returncode == -signal.SIGKILL:
                    self_killed += 1
            if workers and killed + self_killed < kills:
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                await asyncio.to_thread(victim.wait)
                killed += 1
        stop.set()
        await load
        refs.extend(load_refs)
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            await asyncio.to_thread(worker.wait)
            killed += 1
        workers.clear()
        kill_s = time.monotonic() - started
        print(
            f"kills: {killed + self_killed} ({killed} external kill -9, {self_killed} at a "
            f"crash point) in {kill_s:.0f} s; tabs opened under load: {len(load_refs)}"
        )
        for _ in range(DRAIN_BURSTS_MAX):
            await asyncio.sleep(1.1)  # the last killed workers' entries become reclaimable
            report = await asyncio.to_thread(burst, env, DRAIN_BURST_S_MAX)
            if report["left_pending"] == 0 and report["acked"] == 0:
                break
        findings = await check_invariants(meter, gateway, refs, ledger)
        print(f"tabs: {findings.tabs}; outcomes: {dict(findings.outcomes)}")
        print(f"captured: {findings.captured_minor} minor units")
        print(f"double captures in the sandbox log: {findings.double_captures}")
        print(f"lost accrued minor units: {findings.lost_minor}")
        print(f"tabs not terminal after the kills stopped: {findings.not_terminal}")
        print(f"captures not equal to the statement: {findings.wrong_amounts}")
        print(f"model earnings off by (minor units): {findings.earnings_off_minor}")
        print(f"settlements the ledger disagrees on (or lacks): {findings.ledger_off}")
        return findings
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        await meter.aclose()
        await store.close()
        sandbox.terminate()
        sandbox.wait(10)
        sandbox_log.close()
        await ledger.close()
        postgres.stop()
        redis.stop()


def main() -> int:
    """Parse arguments, run the soak, exit 1 (with the seed) if an invariant broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--throughput-tabs", type=int, default=500)
    parser.add_argument("--sandbox-latency-ms", type=int, default=5)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed: {seed}")
    with tempfile.TemporaryDirectory(prefix="tipmeter-soak-") as tmp:
        findings = asyncio.run(
            soak(args.kills, seed, Path(tmp), args.throughput_tabs, args.sandbox_latency_ms)
        )
    if not findings.clean:
        print(f"FAILED: invariants broken; replay with --seed {seed}", file=sys.stderr)
        return 1
    print("ok: 0 double captures, 0 lost minor units, every tab terminal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
