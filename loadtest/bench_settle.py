"""Benchmark: how many tabs one settlement worker settles per second.

Opens ``tabs`` tabs on holds of the HTTP sandbox gateway (``tipmeter sandbox-gateway``, a
separate process, as a real processor is a network hop away), spends on each (a tip, and a
show's line on every other tab), freezes them all and queues them, then lets one burst worker
(:meth:`settlement.worker.Worker.run_burst`) settle the queue and times it. Then it checks the
money: every tab captured exactly its accrued amount, once.

    .venv/bin/python -m loadtest.bench_settle --tabs 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from loadtest.procs import VENV_BIN
from metering.clock import SystemClock
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter, open_store
from metering.outcomes import Code, TabRef
from metering.scripts import METERING_SCRIPTS
from metering.store import RedisTarget
from metering.tips import TipRequest
from server.embedded_postgres import PostgresServer
from server.embedded_redis import RedisServer, free_port
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox_http import HttpGateway
from settlement.scripts import SETTLEMENT_SCRIPTS
from settlement.worker import Worker

#: Tabs opened (and frozen) at once while preparing.
PREPARE_CONCURRENCY = 50


@dataclass
class Figures:
    """What one run measured."""

    tabs: int
    seconds: float
    captured_minor: int

    @property
    def tabs_per_s(self) -> float:
        """Tabs settled per second."""
        return self.tabs / self.seconds if self.seconds else 0.0


async def _prepare(meter: Meter, gateway: HttpGateway, n: int) -> TabRef:
    customer = f"settle{n}"
    hold = await gateway.authorize(
        idempotency_key=f"auth:{customer}",
        payment_method="tok_visa",
        amount_minor=5_000,
        currency="USD",
    )
    opened = await meter.tabs.open(
        customer=customer,
        currency="USD",
        cap_minor=5_000,
        auth_ref=hold.auth_ref,
        capture_before_ms=hold.expires_at_ms,
    )
    if opened.code is not Code.APPLIED:
        raise RuntimeError(f"could not open a tab: {opened}")
    ref = TabRef(customer, opened.tab_id)
    tipped = await meter.tip(
        ref,
        TipRequest(
            tip_id=f"t{n}", room=f"room{n % 50}", amount_minor=100 + n % 900, currency="USD"
        ),
    )
    if tipped.code is not Code.APPLIED:
        raise RuntimeError(f"could not tip: {tipped}")
    frozen = await request_settlement(meter, ref, FreezeReason.MERCHANT)
    if not frozen.code.ok:
        raise RuntimeError(f"could not freeze: {frozen}")
    return ref


async def run(tabs: int, redis_url: str, sandbox_url: str, database_url: str) -> Figures:
    """Prepare ``tabs`` frozen tabs, settle them with one burst worker (each outcome written to
    the ledger of record), check, and measure."""
    ledger = await Ledger.open(DatabaseConfig(url=database_url), migrate_schema=True)
    store = await open_store(RedisTarget(url=redis_url), (*METERING_SCRIPTS, *SETTLEMENT_SCRIPTS))
    meter = Meter(store, clock=SystemClock())
    gateway = HttpGateway(sandbox_url, timeout_s=10)
    try:
        gate = asyncio.Semaphore(PREPARE_CONCURRENCY)

        async def prepare(n: int) -> TabRef:
            async with gate:
                return await _prepare(meter, gateway, n)

        refs = await asyncio.gather(*(prepare(n) for n in range(tabs)))
        worker = Worker(meter, gateway, ledger=ledger, consumer="bench")
        started = time.perf_counter()
        report = await worker.run_burst(sweep=False)
        seconds = time.perf_counter() - started
        if report.acked != tabs:
            raise RuntimeError(f"the burst settled {report.acked} of {tabs} tabs: {report}")
        captured = 0
        for ref in refs:
            tab = await meter.tabs.read(ref)
            if tab is None or tab.state is not TabState.SETTLED:
                raise RuntimeError(f"{ref} did not settle: {tab}")
            captured += tab.accrued_minor
        log = await gateway.capture_log()
        holds = {entry["auth_ref"] for entry in log}
        if len(log) != tabs or len(holds) != tabs:
            raise RuntimeError(f"the sandbox captured {len(log)} times, not once per tab")
        if sum(entry["amount_minor"] for entry in log) != captured:
            raise RuntimeError("the sandbox captured other amounts than the tabs accrued")
        return Figures(tabs, seconds, captured)
    finally:
        await meter.aclose()
        await store.close()
        await ledger.close()


@contextlib.asynccontextmanager
async def sandbox_gateway(work: Path) -> AsyncIterator[str]:
    """A ``tipmeter sandbox-gateway`` process on a free port; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")}
    env |= {
        "TIPMETER_SANDBOX_PORT": str(port),
        "TIPMETER_LOG_LEVEL": "warning",
        # A journal of its own for this run (the sandbox keeps its record across restarts).
        "TIPMETER_DATA_DIR": str(work / "sandbox-data"),
    }
    with (work / "sandbox.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            str(VENV_BIN / "tipmeter"), "sandbox-gateway", env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        probe = HttpGateway(url, timeout_s=1)
        for _ in range(300):
            with contextlib.suppress(Exception):
                await probe.capture_log()
                break
            if process.returncode is not None:
                raise RuntimeError(f"the sandbox gateway exited: {process.returncode}")
            await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def run_with_own_redis(tabs: int) -> Figures:
    """Start a private redis-server, PostgreSQL and sandbox gateway, run, stop them."""
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis", port=free_port(), persistent=False)
        postgres = PostgresServer(Path(tmp), ephemeral=True)
        redis.start()
        try:
            postgres.start()
            async with sandbox_gateway(Path(tmp)) as url:
                return await run(tabs, redis.url, url, postgres.url)
        finally:
            postgres.stop()
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tabs", type=int, default=5_000)
    args = parser.parse_args(argv)
    if not 1 <= args.tabs <= 1_000_000:
        parser.error("--tabs must be between 1 and 1,000,000")
    figures = asyncio.run(run_with_own_redis(args.tabs))
    print(
        f"settled {figures.tabs} tabs in {figures.seconds:.2f} s: "
        f"{figures.tabs_per_s:.0f} tabs/s, {figures.captured_minor} minor units captured"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
