"""Settlement unchanged on a local six-node Redis Cluster: every script on one hash tag."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter, open_store
from metering.scripts import METERING_SCRIPTS
from metering.store import RedisTarget
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from settlement.scripts import SETTLEMENT_SCRIPTS
from settlement.webhooks import WebhookConfig
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab, settled_share
from tests.settlement.receiver import receiving

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster_meter(cluster_nodes: tuple[str, ...], clock: FakeClock) -> AsyncIterator[Meter]:
    store = await open_store(
        RedisTarget(cluster_nodes=cluster_nodes), (*METERING_SCRIPTS, *SETTLEMENT_SCRIPTS)
    )
    meter = Meter(store, clock=clock)
    try:
        yield meter
    finally:
        await meter.aclose()
        await store.close()


async def test_settlement_on_a_cluster(
    cluster_meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    meter = cluster_meter
    gateway = SandboxGateway(clock=clock)
    refs = []
    for n in range(12):
        ref = await open_backed_tab(meter, gateway, customer=f"cust{n}")
        await meter.tip(ref, tip("t1", 100 + n, room=f"room{n % 5}"))
        await request_settlement(meter, ref, FreezeReason.MERCHANT)
        refs.append(ref)
    async with receiving() as receiver:
        config = WebhookConfig(url=receiver.url, secret="s")
        report = await make_worker(meter, gateway, ledger, webhook_config=config).run_burst()
    assert report.statuses == {"settled": 12}
    assert len(receiver.received) == 12
    assert len(gateway.captures) == 12
    for ref in refs:
        tab = await meter.tabs.read(ref)
        assert tab is not None
        assert tab.state is TabState.SETTLED
    assert await ledger.find_capture(gateway.captures[0].capture_id) in refs
    settled = 0
    for r in range(5):
        settled += await settled_share(ledger, f"room{r}")
    assert settled == sum((100 + n) * 6_000 // 10_000 for n in range(12))
