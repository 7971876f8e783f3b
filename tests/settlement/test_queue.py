"""Asking for settlement freezes the tab, records why, and queues it once per request."""

from __future__ import annotations

from metering import keys
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from metering.store import stream_entries
from settlement.queue import entry_ref, request_settlement
from tests.metering.helpers import open_tab, tip


async def test_settle_now_freezes_and_queues(meter: Meter) -> None:
    ref = await open_tab(meter)
    await meter.tip(ref, tip("t1", 300))
    result = await request_settlement(meter, ref, FreezeReason.MERCHANT)
    assert result.code is Code.APPLIED
    assert (result.balance.state, result.balance.accrued_minor, result.reason) == (
        TabState.SETTLING,
        300,
        "merchant",
    )
    entries = stream_entries(await meter.store.client.xrange(keys.settle_queue()))
    assert [(f["customer"], f["tab"], f["reason"]) for _, f in entries] == [
        (b"c1", ref.tab_id.encode(), b"merchant")
    ]
    score = await meter.store.client.zscore(
        keys.tab_index(keys.tab_index_shard("c1")), keys.tab_index_member("c1", ref.tab_id)
    )
    assert score == meter.clock.now_ms()


async def test_a_second_request_keeps_the_first_reason(meter: Meter) -> None:
    ref = await open_tab(meter)
    await request_settlement(meter, ref, FreezeReason.CUSTOMER_ENDED)
    again = await request_settlement(meter, ref, FreezeReason.MERCHANT)
    assert (again.code, again.reason) == (Code.DUPLICATE, "customer_ended")


async def test_nothing_is_queued_for_a_missing_tab(meter: Meter) -> None:
    result = await request_settlement(meter, TabRef("c1", "tab_none"), FreezeReason.MERCHANT)
    assert result.code is Code.TAB_NOT_FOUND
    assert await meter.store.client.xlen(keys.settle_queue()) == 0


async def test_the_worker_reads_back_the_tab_of_every_entry_the_queue_writes(meter: Meter) -> None:
    ref = await open_tab(meter)
    await request_settlement(meter, ref, FreezeReason.MERCHANT)  # writes through add_entry
    [(_, fields)] = stream_entries(await meter.store.client.xrange(keys.settle_queue()))
    assert entry_ref(fields) == ref
    assert entry_ref({"customer": b"c1"}) is None
    assert entry_ref({"customer": b"c1", "tab": b"no:colons"}) is None
