"""Shared fixtures: real redis-server processes (session scope), flushed between tests."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, settings

from metering.clock import FakeClock
from metering.limits import Limits
from metering.meter import CORE_SCRIPTS, Meter, open_store
from metering.store import LuaScript, RedisTarget, Store
from server.embedded_redis import RedisServer
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger
from tests.support import postgres
from tests.support.redis_procs import LocalCluster, start_standalone

# Property tests are seeded: `make test` runs the same examples every time (derandomized from
# each test's name), and a failure prints the blob that replays it. `make soak` explores with
# fresh random seeds and ten times the examples (HYPOTHESIS_PROFILE=explore).
_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "tipmeter", derandomize=True, print_blob=True, deadline=None, suppress_health_check=_SUPPRESSED
)
settings.register_profile(
    "explore",
    derandomize=False,
    print_blob=True,
    deadline=None,
    max_examples=1_000,
    suppress_health_check=_SUPPRESSED,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tipmeter"))

#: Fixtures that give a test a Redis Cluster, where nodes fail on purpose.
_CLUSTER_FIXTURES = frozenset({"redis_cluster", "cluster_nodes", "own_cluster"})


@pytest.fixture(autouse=True)
def _collect_dropped_cluster_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a cluster test, collect the connections redis-py's cluster client dropped.

    When a node fails, redis-py replaces the node's object and drops its pooled connections
    without closing them; they warn (ResourceWarning: unclosed connection, transport, socket)
    when collected, in whichever later test that happens, and fail it at random. Collected
    here, at the end of the test that caused them, with only that warning silenced.
    """
    yield
    if _CLUSTER_FIXTURES.isdisjoint(request.fixturenames):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One standalone redis-server for the whole session, stopped at the end (also on failure)."""
    server = start_standalone(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The standalone server's URL, with every key flushed before the test."""
    with redis.Redis(port=redis_server.tcp_port) as client:
        client.flushall()
    return redis_server.url


def _running(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """``cluster``, started, and stopped when the fixture ends (also on failure)."""
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local six-node Redis Cluster (three primaries, three replicas) for the session."""
    yield from _running(LocalCluster(tmp_path_factory.mktemp("cluster")))


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of the test's own (three primaries, three replicas), for tests that kill or
    freeze its nodes."""
    yield from _running(LocalCluster(tmp_path / "cluster"))


@pytest.fixture
def cluster_nodes(redis_cluster: LocalCluster) -> tuple[str, ...]:
    """The cluster's startup nodes, with every key flushed before the test."""
    redis_cluster.flush()
    return redis_cluster.startup_nodes


@pytest.fixture
def store_scripts() -> Sequence[LuaScript]:
    """The scripts the ``store`` fixture loads: the money core's (a package's conftest may
    add its own)."""
    return CORE_SCRIPTS


@pytest.fixture
async def store(redis_url: str, store_scripts: Sequence[LuaScript]) -> AsyncIterator[Store]:
    """A Store on the standalone server with ``store_scripts`` loaded."""
    store = await open_store(RedisTarget(url=redis_url), store_scripts)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock, started at a fixed instant."""
    return FakeClock()


@pytest.fixture
def limits() -> Limits:
    """The default limits."""
    return Limits()


@pytest.fixture
async def meter(store: Store, clock: FakeClock, limits: Limits) -> AsyncIterator[Meter]:
    """The money core on the standalone server, with a fake clock."""
    meter = Meter(store, clock=clock, limits=limits)
    try:
        yield meter
    finally:
        await meter.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh folder for an embedded redis-server."""
    path = tmp_path / "data"
    path.mkdir()
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the session's PostgreSQL server (if a test started it), whatever the outcome."""
    postgres.stop_shared()


@pytest.fixture
def database_url() -> str:
    """A fresh database on the session's real PostgreSQL server, with the current schema."""
    return postgres.fresh_database()


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    """The ledger of record on a fresh database."""
    ledger = await Ledger.open(DatabaseConfig(url=database_url, connections_max=4))
    try:
        yield ledger
    finally:
        await ledger.close()
