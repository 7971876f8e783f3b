"""Settlement fixtures: a store with the settlement scripts too, a sandbox on the fake clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from metering.clock import FakeClock
from metering.meter import CORE_SCRIPTS
from metering.store import LuaScript
from server.embedded_redis import free_port
from settlement.sandbox import SandboxGateway
from settlement.scripts import SETTLEMENT_SCRIPTS
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
