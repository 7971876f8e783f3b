"""Asking for settlement: freeze the tab (the trigger, atomically), then queue it.

A trigger is recorded by ``freeze_tab.lua`` in the same step as the state change it causes
(``open → settling``, with the reason and time). Queueing comes second, in one pipeline: an
entry on the settlement stream for the worker, and the tab's index entry moved to "now" for the
sweeper. If the process dies between the two, the tab is frozen but not queued, and the sweeper
finds it through the index — so no trigger is lost. Queueing the same tab twice is harmless: the
worker settles a tab at most once, whatever the number of entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from metering import keys
from metering.keys import is_id
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import FreezeResult, TabRef
from metering.store import Store, as_text, translated

#: Entries the settlement stream keeps at most (approximate trimming). The worker deletes what it
#: has settled, so the stream is short; were it ever trimmed, the sweeper queues the lost tabs
#: again from the index.
QUEUE_LEN_MAX: Final = 1_000_000


def add_entry(pipe: Pipeline | ClusterPipeline, ref: TabRef, reason: str, at_ms: int) -> None:
    """Queue ``ref`` on the settlement stream in ``pipe`` — the one writer of an entry, whose
    fields :func:`entry_ref` reads back (``reason`` and ``at`` are for people reading the
    stream; the worker needs only the tab)."""
    pipe.xadd(
        keys.settle_queue(),
        {"customer": ref.customer, "tab": ref.tab_id, "reason": reason, "at": at_ms},
        maxlen=QUEUE_LEN_MAX,
        approximate=True,
    )


def entry_ref(fields: Mapping[str, bytes]) -> TabRef | None:
    """The tab a settlement stream entry names, or None for a malformed entry."""
    try:
        customer = fields["customer"].decode()
        tab_id = fields["tab"].decode()
    except (KeyError, UnicodeDecodeError):
        return None
    if not (is_id(customer) and is_id(tab_id)):
        return None
    return TabRef(customer, tab_id)


async def enqueue(store: Store, ref: TabRef, reason: str, now_ms: int) -> str:
    """Queue ``ref`` for the worker and point its index entry at now; return the entry id."""
    shard = keys.tab_index(keys.tab_index_shard(ref.customer))
    with translated():
        async with store.client.pipeline(transaction=False) as pipe:
            add_entry(pipe, ref, reason, now_ms)
            pipe.zadd(shard, {keys.tab_index_member(ref.customer, ref.tab_id): now_ms})
            entry_id, _ = await pipe.execute()
    return as_text(entry_id)


async def request_settlement(meter: Meter, ref: TabRef, reason: FreezeReason) -> FreezeResult:
    """Freeze ``ref`` for ``reason`` and queue it for settlement.

    Codes: applied (frozen now), duplicate (frozen before, with its original reason; queued
    again, which is harmless while it settles), tab_not_found, tab_not_open.
    """
    result = await meter.tabs.freeze(ref, reason)
    if result.code.ok and result.balance.state is TabState.SETTLING:
        await enqueue(meter.store, ref, result.reason, meter.clock.now_ms())
    return result


async def schedule_look(store: Store, ref: TabRef, at_ms: int) -> None:
    """Ask the sweeper to look at ``ref`` by ``at_ms`` (only ever moves its next look earlier).

    The sweeper finds every trigger within ``recheck_max_ms`` on its own; a caller that knows a
    trigger's time sooner — the server, when a tip's reply shows the tab exhausted, knows that
    ``cap_reached`` falls due at ``now + cap_grace_ms`` — makes it fire on time.
    """
    shard = keys.tab_index(keys.tab_index_shard(ref.customer))
    with translated():
        await store.client.zadd(
            shard, {keys.tab_index_member(ref.customer, ref.tab_id): at_ms}, xx=True, lt=True
        )
