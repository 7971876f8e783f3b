"""Benchmark: what Redis keeps of settled tabs once the retention has passed.

Redis is the meter, not the record: once a tab's outcome is in the ledger (PostgreSQL), its keys
expire after the retention (``docs/ledger.md``). This benchmark checks that the promise holds at
scale: Redis's ``used_memory`` after N tab lifecycles must not grow with N.

It starts a private redis-server and an ephemeral PostgreSQL, measures ``INFO memory``
``used_memory`` of the empty server (scripts loaded), then runs N lifecycles in process, in
batches of concurrent tabs, each the way the product runs it:

1. **open**: a hold from the in-process sandbox gateway, then ``Tabs.open``;
2. **tips**: :data:`TIPS_PER_TAB` tips, each relayed into its room (``Meter.tip``);
3. **a show**: a private session started, billed by ``Sessions.tick`` once a (fake) second for
   :data:`SHOW_S` seconds, ended, dropped from the owner's and room's sets, its events relayed;
4. **settle**: frozen and queued (``request_settlement``), settled by a burst of the real
   :class:`~settlement.worker.Worker` (capture, ledger write, ``retire_tab.lua``), then a sweep
   (as the worker loop does every second), which drops the tab from the sweeper's index.

After N/2 and after N lifecycles it waits until Redis has expired every key with a lifetime
(``INFO keyspace`` ``expires=0``; Redis expires keys by itself on its own clock — active
expiry — so this is a poll with a deadline, not a sleep) and measures again. It prints both
figures next to the empty server's, the keys left by kind, and the number of settlements in the
ledger (which must be N).

Time. The money core runs on a :class:`~metering.clock.FakeClock` (a show's seconds pass
instantly), but Redis expires keys on the real clock, so the windows whose end the benchmark
waits for are shortened to :data:`RETENTION_MS` of real time — the tab retention
(``TIPMETER_REDIS_RETENTION_S``, a day by default) and the lifetime of a tip's idempotency record
(``Limits.op_ttl_ms``, seven days) — and the rooms' relay dedupe window
(``Limits.relayed_window_ms``, fake time) to less than the gap between two batches. The rooms'
event streams keep :data:`ROOM_EVENTS_MAX` events each (the product's default is 10,000), so
they fill up early and the figure is about what grows, not about a bound not yet reached.

What stays after the retention, by design (none of it per tab):

- per room (:data:`ROOMS`): its event stream (bounded), its relay dedupe set (the last window),
  its live earnings hash;
- per customer ever seen: an empty outbox stream (``tm:{c:C}:outbox``; ``XDEL`` leaves an empty
  stream behind). The lifecycles reuse a pool of returning customers, one per tab of a batch
  (:func:`customer`), as a cam site's viewers come back; with distinct customers the figure
  would grow by one empty stream (about 400 bytes, printed) per customer;
- global: the settlement stream (entries deleted once settled) and the billing owners' set.

    .venv/bin/python -m loadtest.bench_retention --lifecycles 100000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from redis.asyncio import Redis

from metering import keys
from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.limits import Limits
from metering.meter import CORE_SCRIPTS, Meter, open_store
from metering.outcomes import Code, TabRef
from metering.sessions import EndReason, SessionKind, SessionRef
from metering.store import RedisTarget, Store
from metering.tips import TipRequest
from server.embedded_postgres import PostgresServer
from server.embedded_redis import RedisServer, free_port
from settlement.config import SettlementConfig
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from settlement.scripts import SETTLEMENT_SCRIPTS
from settlement.worker import Worker

#: Lifecycles of the full run (``make bench``) and of this module's default.
LIFECYCLES_DEFAULT: Final = 100_000
#: Tabs run through their lifecycle together; also the size of the pool of customers.
BATCH_DEFAULT: Final = 1_000
#: Lifecycle steps awaited at once within a batch.
CONCURRENCY: Final = 100
#: Rooms the tips and shows go to.
ROOMS: Final = 10
#: Tips per tab, and the seconds of each tab's show (fake seconds, billed one tick at a time).
TIPS_PER_TAB: Final = 3
SHOW_S: Final = 10
#: Each tab's hold and cap.
CAP_MINOR: Final = 5_000
#: Real time a settled tab's keys (and a tip's idempotency record) live in this benchmark.
RETENTION_MS: Final = 1_000
#: Fake time between the starts of two batches, and the rooms' relay dedupe window (shorter,
#: so each batch's relaying trims the previous batch's records).
BATCH_GAP_MS: Final = 120_000
RELAYED_WINDOW_MS: Final = 60_000
#: Events each room's stream keeps (approximately: Redis trims whole nodes).
ROOM_EVENTS_MAX: Final = 1_000
#: How long to wait for Redis to expire what it must, at most.
EXPIRY_WAIT_S_MAX: Final = 120.0
#: The billing process that owns the shows.
OWNER: Final = "bench-retention"

T = TypeVar("T")

#: Ids inside hash tags and after a kind's prefix, replaced to name a kind of key.
_TAGGED: Final = re.compile(r"\{(c|r|own|ix):[^}]*\}")
_ID_TAIL: Final = re.compile(r"(:(?:tab|sess|op|open)):[^:]+")


def kind_of(key: str) -> str:
    """A key's kind: the key with its customer, room, owner and tab ids replaced by ``*``."""
    return _ID_TAIL.sub(r"\1:*", _TAGGED.sub(r"{\1:*}", key))


def customer(n: int, pool: int) -> str:
    """The customer of lifecycle ``n``: one of ``pool`` returning customers."""
    return f"viewer{n % pool}"


@dataclass(frozen=True, slots=True)
class Kept:
    """Keys of one kind left after the retention, and the memory Redis reports for them."""

    kind: str
    keys: int
    bytes: int


@dataclass
class Figures:
    """What one run measured. Memory is Redis's ``used_memory`` in bytes."""

    lifecycles: int
    seconds: float
    empty_bytes: int
    halfway: int
    halfway_bytes: int
    after_bytes: int
    keys_empty: int
    keys_after: int
    settlements_in_ledger: int
    kept: list[Kept] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """``used_memory`` after the run over the empty server's."""
        return self.after_bytes / self.empty_bytes if self.empty_bytes else 0.0

    @property
    def growth_bytes(self) -> int:
        """What the second half of the lifecycles added to ``used_memory`` (may be negative)."""
        return self.after_bytes - self.halfway_bytes

    @property
    def growth_per_tab_bytes(self) -> float:
        """:attr:`growth_bytes` over the tabs of the second half."""
        tabs = self.lifecycles - self.halfway
        return self.growth_bytes / tabs if tabs else 0.0

    def report(self) -> str:
        """The figures as printed lines."""
        lines = [
            f"{self.lifecycles:,} tab lifecycles (open, {TIPS_PER_TAB} tips, a {SHOW_S} s show, "
            f"settle) in {self.seconds:.1f} s",
            f"Redis used_memory, empty server: {_mib(self.empty_bytes)}",
            f"after {self.halfway:,} lifecycles, retention passed: {_mib(self.halfway_bytes)}",
            f"after {self.lifecycles:,} lifecycles, retention passed: {_mib(self.after_bytes)} "
            f"({self.ratio:.2f}× the empty server; the second half added "
            f"{self.growth_bytes:+,} bytes, {self.growth_per_tab_bytes:+.1f} per tab)",
            f"DBSIZE: {self.keys_empty} empty, {self.keys_after} after",
            f"settlements in the ledger: {self.settlements_in_ledger:,}",
            "keys left after the retention, by kind:",
        ]
        lines += [f"  {k.kind}: {k.keys:,} keys, {k.bytes:,} bytes" for k in self.kept]
        return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


async def _bounded(count: int, step: Callable[[int], Awaitable[T]]) -> list[T]:
    """``step(0) … step(count - 1)``, at most :data:`CONCURRENCY` at once."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> T:
        async with gate:
            return await step(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(what)


class Lifecycles:
    """Runs batches of tab lifecycles against one Redis and one ledger (see the module doc)."""

    def __init__(
        self, meter: Meter, clock: FakeClock, gateway: SandboxGateway, worker: Worker, pool: int
    ) -> None:
        self.meter = meter
        self.clock = clock
        self.gateway = gateway
        self.worker = worker
        self.pool = pool
        self.done = 0

    async def batch(self, size: int) -> None:
        """Run ``size`` lifecycles together, from the hold to the sweep after the settlement."""
        _require(size <= self.pool, "a batch may not hold two tabs of one customer")
        self.clock.advance(BATCH_GAP_MS)
        first = self.done
        refs = await _bounded(size, lambda i: self._open_and_tip(first + i))
        shows = await _bounded(size, lambda i: self._start_show(first + i, refs[i]))
        for _ in range(SHOW_S):
            self.clock.advance(1_000)
            ticks = await self.meter.sessions.tick(OWNER, shows)
            _require(all(t.status == "running" for t in ticks), f"a show stopped: {ticks[:3]}")
        await _bounded(size, lambda i: self._end_show(shows[i]))
        sessions = self.meter.sessions
        await sessions.forget_many([(s, _room(first + i)) for i, s in enumerate(shows)], OWNER)
        await self.meter.rooms.relay_pending_many([ref.customer for ref in refs])
        frozen = await _bounded(
            size, lambda i: request_settlement(self.meter, refs[i], FreezeReason.CUSTOMER_ENDED)
        )
        _require(all(f.code is Code.APPLIED for f in frozen), "a tab did not freeze")
        report = await self.worker.run_burst(sweep=False)
        _require(
            report.acked == size and report.statuses["settled"] == size,
            f"the burst settled {report.statuses} of {size} tabs",
        )
        # The worker loop sweeps every second; the sweep drops settled tabs from the index.
        await self.worker.sweeper.sweep()
        self.done += size

    async def settle_down(self) -> None:
        """What the sweeper's later rounds do: drop the index entries of tabs whose keys expired
        before a sweep saw them done (with this benchmark's short retention, the first tabs of a
        batch may expire while the burst settles the rest; such an entry goes once it is older
        than ``orphan_grace_ms``)."""
        self.clock.advance(BATCH_GAP_MS)
        await self.worker.sweeper.sweep()

    async def _open_and_tip(self, n: int) -> TabRef:
        who = customer(n, self.pool)
        hold = await self.gateway.authorize(
            idempotency_key=f"auth:{who}:{n}",
            payment_method="tok_visa",
            amount_minor=CAP_MINOR,
            currency="USD",
        )
        opened = await self.meter.tabs.open(
            customer=who,
            currency="USD",
            cap_minor=CAP_MINOR,
            auth_ref=hold.auth_ref,
            capture_before_ms=hold.expires_at_ms,
        )
        _require(opened.code is Code.APPLIED, f"could not open a tab: {opened}")
        ref = TabRef(who, opened.tab_id)
        for t in range(TIPS_PER_TAB):
            tip = TipRequest(
                tip_id=f"t{n}-{t}", room=_room(n), amount_minor=100 + (n + t) % 900, currency="USD"
            )
            tipped = await self.meter.tip(ref, tip)
            _require(tipped.code is Code.APPLIED, f"could not tip: {tipped}")
        return ref

    async def _start_show(self, n: int, ref: TabRef) -> SessionRef:
        started = await self.meter.sessions.start(
            ref,
            session_id=f"show{n}",
            room=_room(n),
            kind=SessionKind.PRIVATE.value,
            currency="USD",
            owner=OWNER,
        )
        _require(started.code is Code.APPLIED, f"could not start a show: {started}")
        return SessionRef(ref.customer, f"show{n}", ref.tab_id)

    async def _end_show(self, show: SessionRef) -> None:
        ended = await self.meter.sessions.end(show, EndReason.STOPPED)
        _require(ended.code is Code.APPLIED, f"could not end a show: {ended}")


def _room(n: int) -> str:
    return f"room{n % ROOMS}"


async def used_memory(store: Store) -> int:
    """Redis's ``used_memory``: the bytes its allocator holds for data and overhead.

    The benchmark's own pooled connections are closed first (each costs Redis its buffers,
    tens of KiB): the figure is taken with one client, as the empty server's is.
    """
    if isinstance(store.client, Redis):  # always here: the benchmark's server is standalone
        await store.client.connection_pool.disconnect()
    info: dict[str, Any] = await store.client.info("memory")
    return int(info["used_memory"])


async def wait_for_expiry(store: Store) -> int:
    """Wait until Redis holds no key with a lifetime left (all expired); return DBSIZE.

    Redis expires keys by itself (active expiry, on its own clock); this polls ``INFO
    keyspace`` until none with an expiry remains, or raises after :data:`EXPIRY_WAIT_S_MAX`.
    """
    deadline = time.monotonic() + EXPIRY_WAIT_S_MAX + RETENTION_MS / 1_000
    while True:
        space: dict[str, Any] = await store.client.info("keyspace")
        db0 = space.get("db0", {"keys": 0, "expires": 0})
        if int(db0["expires"]) == 0:
            return int(db0["keys"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis still holds {db0['expires']} keys with an expiry")
        await asyncio.sleep(0.1)


async def kept_keys(store: Store) -> list[Kept]:
    """Every key left, grouped by kind, with its ``MEMORY USAGE`` (after the retention only:
    a ``SCAN`` of the whole keyspace is fine on a benchmark's private server, never on a
    request path)."""
    counts: dict[str, list[int]] = {}
    async for raw in store.client.scan_iter(count=1_000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        size = await store.client.memory_usage(key) or 0
        tally = counts.setdefault(kind_of(key), [0, 0])
        tally[0] += 1
        tally[1] += int(size)
    return [Kept(kind, n, size) for kind, (n, size) in sorted(counts.items())]


async def settlements_in_ledger(ledger: Ledger) -> int:
    """How many settlements the ledger of record holds."""
    async with ledger.database.connection() as conn:
        cursor = await conn.execute("SELECT count(*) AS n FROM settlements")
        row = await cursor.fetchone()
    return int(row["n"]) if row is not None else 0


def _batches(total: int, size: int) -> Sequence[int]:
    return [min(size, total - start) for start in range(0, total, size)]


async def run(lifecycles: int, redis_url: str, database_url: str, batch: int) -> Figures:
    """Measure the empty server, run ``lifecycles`` in batches of ``batch``, measure halfway
    and at the end once the retention has passed; check every settlement reached the ledger."""
    ledger = await Ledger.open(DatabaseConfig(url=database_url), migrate_schema=True)
    store = await open_store(
        RedisTarget(url=redis_url, connections_max=CONCURRENCY * 2),
        (*CORE_SCRIPTS, *SETTLEMENT_SCRIPTS),
    )
    clock = FakeClock()
    limits = Limits(
        op_ttl_ms=RETENTION_MS,
        relayed_window_ms=RELAYED_WINDOW_MS,
        room_events_max=ROOM_EVENTS_MAX,
    )
    meter = Meter(store, clock=clock, limits=limits)
    config = SettlementConfig(retention_ms=RETENTION_MS, concurrency_max=32)
    gateway = SandboxGateway(clock=clock)
    worker = Worker(meter, gateway, ledger=ledger, config=config)
    try:
        empty = await used_memory(store)
        keys_empty = int(await store.client.dbsize())
        runner = Lifecycles(meter, clock, gateway, worker, pool=batch)
        halfway = lifecycles // 2
        seconds = 0.0
        samples: list[int] = []
        for part in (halfway, lifecycles - halfway):
            started = time.perf_counter()
            for size in _batches(part, batch):
                await runner.batch(size)
            seconds += time.perf_counter() - started
            await wait_for_expiry(store)
            await runner.settle_down()
            samples.append(await used_memory(store))
        keys_after = await wait_for_expiry(store)
        kept = await kept_keys(store)
        in_ledger = await settlements_in_ledger(ledger)
        _require(in_ledger == lifecycles, f"the ledger holds {in_ledger} of {lifecycles}")
        for k in kept:
            _require(
                k.kind not in PER_TAB_KINDS, f"{k.keys} keys of kind {k.kind} outlived the tabs"
            )
        return Figures(
            lifecycles=lifecycles,
            seconds=seconds,
            empty_bytes=empty,
            halfway=halfway,
            halfway_bytes=samples[0],
            after_bytes=samples[1],
            keys_empty=keys_empty,
            keys_after=keys_after,
            settlements_in_ledger=in_ledger,
            kept=kept,
        )
    finally:
        await meter.aclose()
        await store.close()
        await ledger.close()


#: Kinds of key that belong to one tab (or one of its tips or shows), or hold one entry per tab
#: (the sweeper's index): none may outlive the retention.
PER_TAB_KINDS: Final = frozenset(
    kind_of(k)
    for k in (
        keys.tab("C", "T"),
        keys.tab_lines("C", "T"),
        keys.session("C", "S"),
        keys.op("C", "O"),
        keys.open_tab("C", "USD"),
        keys.tab_index(0),
    )
)


async def run_with_own_servers(lifecycles: int, batch: int = BATCH_DEFAULT) -> Figures:
    """:func:`run` against a private redis-server and an ephemeral PostgreSQL started here."""
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis", port=free_port(), persistent=False)
        postgres = PostgresServer(Path(tmp), ephemeral=True, durable=False)
        redis.start()
        try:
            postgres.start()
            return await run(lifecycles, redis.url, postgres.url, batch)
        finally:
            postgres.stop()
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lifecycles", type=int, default=LIFECYCLES_DEFAULT)
    parser.add_argument("--batch", type=int, default=BATCH_DEFAULT)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 lifecycles")
    args = parser.parse_args(argv)
    lifecycles = 1_000 if args.quick else args.lifecycles
    if not 2 <= lifecycles <= 10_000_000:
        parser.error("--lifecycles must be between 2 and 10,000,000")
    if not 1 <= args.batch <= 10_000:
        parser.error("--batch must be between 1 and 10,000")
    figures = asyncio.run(run_with_own_servers(lifecycles, min(args.batch, lifecycles)))
    print(figures.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
