"""A small run of the retention benchmark: every settlement reaches the ledger, and once the
retention has passed Redis keeps nothing per tab."""

from __future__ import annotations

from loadtest.bench_retention import (
    PER_TAB_KINDS,
    ROOMS,
    kind_of,
    run_with_own_servers,
)
from metering import keys

LIFECYCLES = 200
#: Tabs per batch, and so the pool of returning customers: smaller than LIFECYCLES, so a key
#: kept per customer cannot pass for one kept per tab.
BATCH = 50

#: What may stay once the retention has passed, and how many keys of each kind at most. None of
#: it is per tab:
#: - per customer ever seen: the outbox stream, emptied by relaying (XDEL leaves the key);
#: - per room: its bounded event stream, its relay dedupe set (the last window), its live
#:   earnings hash;
#: - global: the settlement stream (settled entries deleted) and the billing owners' set.
BOUNDED_KINDS = {
    kind_of(keys.outbox("C")): BATCH,
    kind_of(keys.room_events("R")): ROOMS,
    kind_of(keys.room_relayed("R")): ROOMS,
    kind_of(keys.room_earnings("R")): ROOMS,
    kind_of(keys.settle_queue()): 1,
    kind_of(keys.owners()): 1,
}


def test_kinds_name_keys_without_their_ids() -> None:
    assert kind_of(keys.tab("viewer7", "t-abc")) == "tm:{c:*}:tab:*"
    assert kind_of(keys.tab_lines("viewer7", "t-abc")) == "tm:{c:*}:tab:*:lines"
    assert kind_of(keys.op("viewer7", "t7-1")) == "tm:{c:*}:op:*"
    assert kind_of(keys.session("viewer7", "show7")) == "tm:{c:*}:sess:*"
    assert kind_of(keys.tab_index(3)) == "tm:{ix:*}:tabs"
    assert kind_of(keys.room_events("room3")) == "tm:{r:*}:events"
    assert kind_of(keys.settle_queue()) == "tm:{settle}:queue"
    assert not PER_TAB_KINDS & set(BOUNDED_KINDS)


async def test_nothing_per_tab_outlives_the_retention() -> None:
    figures = await run_with_own_servers(LIFECYCLES, batch=BATCH)

    assert figures.lifecycles == LIFECYCLES
    assert figures.settlements_in_ledger == LIFECYCLES
    kept = {k.kind: k.keys for k in figures.kept}
    assert set(kept) <= set(BOUNDED_KINDS), kept
    for kind, count in kept.items():
        assert count <= BOUNDED_KINDS[kind], (kind, count)
    assert figures.keys_empty == 0
    assert figures.keys_after == sum(kept.values())
    assert figures.keys_after <= sum(BOUNDED_KINDS.values()) < LIFECYCLES
    assert figures.empty_bytes > 0
    assert figures.after_bytes > 0

    report = figures.report()
    assert f"{LIFECYCLES} tab lifecycles" in report
    assert "Redis used_memory, empty server: " in report
    assert f"after {LIFECYCLES // 2} lifecycles, retention passed: " in report
    assert f"after {LIFECYCLES} lifecycles, retention passed: " in report
    assert f"settlements in the ledger: {LIFECYCLES}" in report
    assert f"DBSIZE: 0 empty, {figures.keys_after} after" in report
    assert f"  {kind_of(keys.outbox('C'))}: " in report
