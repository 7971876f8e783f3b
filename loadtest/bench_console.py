"""Benchmark: the operator console's analyses over a ledger of a million journal entries.

It starts its own PostgreSQL (fsync off, an ephemeral folder), seeds it with
:mod:`loadtest.console_seed` (about ``--entries`` journal entries, with their settlements, lines,
shows, earnings, refunds, disputes and collection cases, spread over ``--days`` days), starts a
real ``tipmeter serve`` on it (with its own redis-server), logs in as an operator, and times
every analysis page — each analysis by day, week and month over the longest window a page may
ask for — through HTTP, three times each. It prints each page's median and the slowest one::

    python -m loadtest.bench_console                   # 1,000,000 entries (part of make bench)
    python -m loadtest.bench_console --entries 20000   # a quick smoke run

Exit status 1 when the slowest page takes longer than ``--budget-ms`` (default
:data:`PAGE_BUDGET_MS`).
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import psycopg

from loadtest import console_seed, procs
from server.console import auth
from server.console.analyses import ANALYSES, PERIODS, WINDOW_DAYS_MAX
from server.embedded_postgres import PostgresServer
from server.embedded_redis import RedisServer, free_port
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger

#: Journal entries the benchmark seeds by default.
ENTRIES_DEFAULT: Final = 1_000_000
#: Days the seeded entries spread over (the newest on the day before the run).
DAYS_DEFAULT: Final = 365
#: Timings per page (the median is reported).
RUNS_PER_PAGE: Final = 3
#: The slowest page must answer within this, in milliseconds (what an operator waits for).
PAGE_BUDGET_MS: Final = 2_000
_PASSWORD: Final = "benchmark operator password"


async def _migrate(url: str) -> None:
    ledger = await Ledger.open(DatabaseConfig(url=url, connections_max=1), migrate_schema=True)
    await ledger.close()


def _client(base: str) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


def _login(opener: urllib.request.OpenerDirector, base: str) -> None:
    request = urllib.request.Request(  # noqa: S310 (an http:// URL this benchmark made)
        f"{base}/console/api/login",
        data=json.dumps({"operator": "bench", "password": _PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with opener.open(request, timeout=60) as response:
        if response.status != 200:
            raise RuntimeError(f"login failed: {response.status}")


def _time_page(opener: urllib.request.OpenerDirector, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with opener.open(url, timeout=120) as response:
        body = response.read()
        status = response.status
    elapsed_ms = (time.perf_counter() - started) * 1_000
    if status != 200:
        raise RuntimeError(f"{url}: {status}")
    return elapsed_ms, len(json.loads(body)["rows"])


def run(entries: int, days: int, budget_ms: int) -> int:
    """Seed, serve, time every page; print the table and the slowest; the exit status."""
    with tempfile.TemporaryDirectory(prefix="tipmeter-bench-console-") as tmp:
        work = Path(tmp)
        postgres = PostgresServer(work / "pg", ephemeral=True, durable=False)
        postgres.start()
        redis = RedisServer(work / "redis")
        server: procs.Child | None = None
        try:
            url = postgres.create_database("console_bench")
            asyncio.run(_migrate(url))
            until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            since = until - timedelta(days=days)
            started = time.perf_counter()
            seeded = console_seed.seed(
                url,
                settlements_n=console_seed.settlements_for(entries),
                since=since,
                days=days,
                checked=False,
            )
            seed_s = time.perf_counter() - started
            print(
                f"seeded {seeded.entries_n:,} journal entries "
                f"({seeded.settlements_n:,} settlements) in {seed_s:.0f} s"
            )
            with psycopg.connect(url) as conn:
                conn.execute(
                    "INSERT INTO operators (operator_id, role, password_hash, created_at) "
                    "VALUES ('bench', 'read_only', %s, now())",
                    (auth.hash_password(_PASSWORD),),
                )
            redis.start()
            port = free_port()
            server = procs.tipmeter(
                {
                    "TIPMETER_REDIS_URL": redis.url,
                    "TIPMETER_DATABASE_URL": url,
                    "TIPMETER_TICKET_SECRETS": "bench-console-ticket-secret-0123456789",
                    "TIPMETER_API_KEYS": "bench-console-api-key-0123456789",
                    "TIPMETER_WORKER": "on",
                },
                port,
                work / "tipmeter.log",
            )
            server.wait_listening()
            base = f"http://127.0.0.1:{port}"
            opener = _client(base)
            _login(opener, base)
            window_since = until - timedelta(days=min(days, WINDOW_DAYS_MAX))
            window = f"since={window_since.date()}&until={until.date()}"
            results: list[tuple[float, str, int]] = []
            print(f"\n{'page':<44} {'median ms':>10} {'rows':>6}")
            for name in ANALYSES:
                for period in PERIODS if name != "top-models" else ("day",):
                    page = f"/console/api/analyses/{name}?period={period}&{window}"
                    timings = [_time_page(opener, base + page) for _ in range(RUNS_PER_PAGE)]
                    median = statistics.median(t for t, _ in timings)
                    label = f"{name} by {period}" if name != "top-models" else name
                    results.append((median, label, timings[0][1]))
                    print(f"{label:<44} {median:>10.1f} {timings[0][1]:>6}")
            slowest = max(results)
            print(
                f"\nslowest page: {slowest[1]} — {slowest[0]:.0f} ms over "
                f"{seeded.entries_n:,} journal entries (budget {budget_ms} ms)"
            )
            return 0 if slowest[0] <= budget_ms else 1
        finally:
            if server is not None:
                server.stop()
            redis.stop()
            postgres.stop()


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=ENTRIES_DEFAULT)
    parser.add_argument("--days", type=int, default=DAYS_DEFAULT)
    parser.add_argument("--budget-ms", type=int, default=PAGE_BUDGET_MS)
    args = parser.parse_args(argv)
    return run(args.entries, args.days, args.budget_ms)


if __name__ == "__main__":
    sys.exit(main())
