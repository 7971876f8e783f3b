"""Settlement fixtures: a store with the settlement scripts too, a sandbox on the fake clock, a
sandbox process, and the rig of the tests of real worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from metering.clock import FakeClock, SystemClock
from metering.meter import CORE_SCRIPTS, Meter
from metering.store import LuaScript, Store
from server.embedded_redis import free_port
from settlement.ledger.ledger import Ledger
from settlement.sandbox import SandboxGateway
from settlement.sandbox_http import HttpGateway
from settlement.scripts import SETTLEMENT_SCRIPTS
from tests.settlement.crash_support import WorkerRig
from tests.support.processes import TipmeterProcess


@pytest.fixture
def store_scripts() -> Sequence[LuaScript]:
    """The ``store`` fixture loads settlement's scripts too."""
    return (*CORE_SCRIPTS, *SETTLEMENT_SCRIPTS)


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


@pytest.fixture
async def rig(
    store: Store,
    redis_url: str,
    sandbox_process: TipmeterProcess,
    tmp_path: Path,
    database_url: str,
    ledger: Ledger,
) -> AsyncIterator[WorkerRig]:
    """The rig of a test of real worker processes (:class:`WorkerRig`)."""
    meter = Meter(store, clock=SystemClock())
    try:
        yield WorkerRig(
            meter,
            HttpGateway(sandbox_process.base_url, timeout_s=5),
            ledger,
            tmp_path,
            redis_url,
            sandbox_process.base_url,
            database_url,
        )
    finally:
        await meter.aclose()
