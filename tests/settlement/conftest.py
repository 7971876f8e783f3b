"""Settlement fixtures: a store with the settlement scripts too, a sandbox on the fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from metering.clock import FakeClock
from metering.meter import CORE_SCRIPTS, open_store
from metering.store import RedisTarget, Store
from server.embedded_redis import free_port
from settlement.sandbox import SandboxGateway
from settlement.scripts import SETTLEMENT_SCRIPTS
from tests.support.processes import TipmeterProcess


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    """A Store on the standalone server with the money core's and settlement's scripts."""
    store = await open_store(RedisTarget(url=redis_url), (*CORE_SCRIPTS, *SETTLEMENT_SCRIPTS))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def gateway(clock: FakeClock) -> SandboxGateway:
    """The in-process sandbox gateway, on the test's fake clock."""
    return SandboxGateway(clock=clock)


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[TipmeterProcess]:
    """A ``tipmeter sandbox-gateway`` process on a free loopback port."""
    port = free_port()
    process = TipmeterProcess(
        ["sandbox-gateway"], {"TIPMETER_SANDBOX_PORT": str(port)}, tmp_path, port=port
    )
    process.start(ready_path="/v1/captures")
    try:
        yield process
    finally:
        process.stop()
