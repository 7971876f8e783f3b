"""The sweeper: finds every tab that is due for settlement and not on its way, so no trigger
is lost in a crash.

Theory of operation. Every tab is listed in one shard of the tab index (``tm:{ix:N}:tabs``),
scored by the next time it needs a look. ``Tabs.open`` writes the entry *before* the tab, so an
entry may point at no tab (the opener died in between); ``request_settlement`` moves the entry
to "now". A sweep takes the due entries of each shard (at most
:attr:`SettlementConfig.sweep_batch_max`) and, for each tab:

- **no tab**: drops the entry once it is older than ``orphan_grace_ms`` (younger, the tab may
  be being created right now);
- **open**: if a time trigger is due, freezes and queues it (``request_settlement``) with the
  reason — in order of precedence ``hold_expiring`` (the hold expires within
  ``hold_margin_ms``), ``cap_reached`` (exhausted for ``cap_grace_ms`` without a raise),
  ``idle`` (nothing spent for ``idle_timeout_ms``); otherwise schedules the next look at the
  earliest trigger time, never later than ``recheck_max_ms`` from now;
- **settling**: queues it again once ``requeue_after_ms`` have passed since its freeze (a lost
  or dead worker's entry; a second entry is harmless, settlement is idempotent), unless it was
  dead-lettered (an operator decides);
- **past settling**: drops the entry once the follow-ups are done; queues it again otherwise.

It also drains each customer's outbox (``Rooms.relay_pending``): room events a crashed server
left behind. Any number of sweepers may run at once; at worst a tab is queued twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from metering import keys
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import TabRef
from metering.store import as_int, as_text, translated
from settlement.config import SettlementConfig
from settlement.queue import add_entry, request_settlement

#: The tab fields a sweep reads, in this order.
_FIELDS: Final = (
    "state",
    "active_at",
    "exhausted_at",
    "capture_before",
    "frozen_at",
    "outcome",
    "followups_done",
    "dead_lettered_at",
)


@dataclass
class SweepReport:
    """What one sweep did."""

    looked_at: int = 0
    requested: Counter[str] = field(default_factory=Counter)
    requeued: int = 0
    dropped_orphans: int = 0
    removed_done: int = 0
    relayed_events: int = 0


def _split(member: str) -> tuple[str, str]:
    customer, _, tab_id = member.partition("/")
    return customer, tab_id


def _opt_int(raw: Any) -> int:
    return as_int(raw) if raw is not None and raw != b"" else 0


class Sweeper:
    """Sweeps the tab index (see the module docstring)."""

    def __init__(self, meter: Meter, config: SettlementConfig) -> None:
        self.meter = meter
        self.store = meter.store
        self.clock = meter.clock
        self.config = config

    async def sweep(self) -> SweepReport:
        """Look at every due index entry of every shard once."""
        report = SweepReport()
        for shard in range(keys.TAB_INDEX_SHARDS):
            await self.sweep_shard(shard, report)
        return report

    def due_trigger(self, now_ms: int, fields: dict[str, Any]) -> tuple[FreezeReason | None, int]:
        """For an open tab: the trigger due now (or None) and the earliest time one will be."""
        config = self.config
        hold_at = _opt_int(fields["capture_before"]) - config.hold_margin_ms
        idle_at = _opt_int(fields["active_at"]) + config.idle_timeout_ms
        exhausted = _opt_int(fields["exhausted_at"])
        cap_at = exhausted + config.cap_grace_ms if exhausted else None
        if now_ms >= hold_at:
            return FreezeReason.HOLD_EXPIRING, now_ms
        if cap_at is not None and now_ms >= cap_at:
            return FreezeReason.CAP_REACHED, now_ms
        if now_ms >= idle_at:
            return FreezeReason.IDLE, now_ms
        candidates = [hold_at, idle_at, now_ms + config.recheck_max_ms]
        if cap_at is not None:
            candidates.append(cap_at)
        return None, min(candidates)

    async def sweep_shard(self, shard: int, report: SweepReport) -> None:
        """Look at the due entries of one index shard."""
        index = keys.tab_index(shard)
        now_ms = self.clock.now_ms()
        with translated():
            due = await self.store.client.zrangebyscore(
                index, "-inf", now_ms, start=0, num=self.config.sweep_batch_max, withscores=True
            )
        if not due:
            return
        pairs: list[Any] = list(due)
        members = [(as_text(member), int(score)) for member, score in pairs]
        refs = [TabRef(*_split(member)) for member, _ in members]
        with translated():
            async with self.store.client.pipeline(transaction=False) as pipe:
                for ref in refs:
                    pipe.hmget(keys.tab(ref.customer, ref.tab_id), list(_FIELDS))
                rows = await pipe.execute()
        reschedule: dict[str, int] = {}
        remove: list[str] = []
        requeue: list[TabRef] = []
        customers: set[str] = set()
        for (member, score), ref, row in zip(members, refs, rows, strict=True):
            report.looked_at += 1
            fields = dict(zip(_FIELDS, row, strict=True))
            if fields["state"] is None:
                if now_ms - score >= self.config.orphan_grace_ms:
                    remove.append(member)
                    report.dropped_orphans += 1
                continue
            customers.add(ref.customer)
            state = TabState(as_text(fields["state"]))
            if state is TabState.OPEN:
                reason, next_ms = self.due_trigger(now_ms, fields)
                if reason is None:
                    reschedule[member] = next_ms
                    continue
                result = await request_settlement(self.meter, ref, reason)
                if result.code.ok:
                    report.requested[reason.value] += 1
                reschedule[member] = now_ms + self.config.requeue_after_ms
            elif _opt_int(fields["dead_lettered_at"]):
                reschedule[member] = now_ms + self.config.recheck_max_ms
            elif state is TabState.SETTLING:
                requeue_at = _opt_int(fields["frozen_at"]) + self.config.requeue_after_ms
                if now_ms >= requeue_at:
                    requeue.append(ref)
                    reschedule[member] = now_ms + self.config.requeue_after_ms
                else:
                    reschedule[member] = requeue_at
            elif fields["followups_done"] is not None or fields["outcome"] is None:
                remove.append(member)
                report.removed_done += 1
            else:
                requeue.append(ref)
                reschedule[member] = now_ms + self.config.requeue_after_ms
        with translated():
            async with self.store.client.pipeline(transaction=False) as pipe:
                for ref in requeue:
                    add_entry(pipe, ref, "sweep", now_ms)
                if reschedule:
                    # XX: never resurrect an entry another sweeper removed meanwhile.
                    pipe.zadd(index, reschedule, xx=True)
                if remove:
                    pipe.zrem(index, *remove)
                await pipe.execute()
        report.requeued += len(requeue)
        for customer in sorted(customers):
            report.relayed_events += await self.meter.rooms.relay_pending(customer)
