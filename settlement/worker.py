"""The settlement worker: one capture per tab, through crashes, timeouts and retries.

Theory of operation. A settlement trigger freezes a tab (``settling``: the amount is fixed) and
adds an entry to the settlement stream ``tm:{settle}:queue`` (:mod:`settlement.queue`). Workers
read the stream as the consumer group ``workers``; an entry stays *pending* — owned by the
worker that read it — until that worker acknowledges it, and it acknowledges only after every
step for the tab is recorded in Redis:

1. **Read** the tab, its lines and its settlement record in one snapshot. Check that the lines
   explain the amount (the statement); never capture an amount they do not.
2. **Record the amount** (``begin_settlement.lua``): the amount to capture is written into the
   tab once, and the attempt is counted.
3. **Call the gateway** with the key ``capture:<customer>/<tab>`` (``void:…`` when nothing was
   accrued). The key is derived from the tab, never from an attempt number, so every retry of
   this step, by any worker, is the same request: the processor charges once.
4. **Record the outcome** (``record_settlement.lua``): settled with the capture id, failed with
   the decline reason and whether card-network rules allow a retry, voided, or expired — the
   one state change that takes the tab out of ``settling``.
5. **Follow-ups**, each idempotent by the settlement id: the outcome, the itemized lines, the
   shows and each model's share written to the ledger of record in PostgreSQL (one
   transaction, unique by settlement id: :mod:`settlement.ledger`), the webhook queued
   (``enqueue_webhook.lua``); then ``retire_tab.lua`` marks the follow-ups done and lets the
   tab's Redis keys expire after the retention (readers fall back to the ledger).
6. **Acknowledge**: ``XACK`` and ``XDEL`` the entry.

A worker may die anywhere. Its pending entries are reclaimed (``XAUTOCLAIM``) by any worker once
idle for :attr:`SettlementConfig.claim_idle_ms`, and the sweeper queues any tab still settling
(or with follow-ups undone) again, so nothing depends on the dead worker. Every step above is
safe to repeat: steps 2, 4 and 5 answer ``duplicate`` the second time, and step 3 with the same
key returns the processor's first answer. An entry delivered :attr:`SettlementConfig.
deliveries_max` times without success (a processor that refuses the request, a malformed entry)
is moved to ``tm:{settle}:dead`` for an operator, and the tab is marked so the sweeper leaves it.

A hold about to expire is never captured: within :attr:`SettlementConfig.capture_guard_ms` of
``capture_before`` the tab becomes ``expired`` — unless an earlier attempt may have reached the
processor, in which case the worker looks the hold up at its processor (read-after-write, by
the authorization reference) and records the capture it finds.

Every gateway call for a tab goes to the processor that holds its authorization, named on the
tab when it opened (:meth:`settlement.processors.registry.ProcessorRegistry.for_processor`).

``GatewayUnavailable`` (and an unreachable Redis or ledger database) leaves the entry pending:
it is retried with the same key after the claim bound. :meth:`Worker.run_burst` drains the queue
once and returns, which makes tests deterministic; :meth:`Worker.run` loops until its stop event
is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, TypeVar

from redis import exceptions as redis_errors

from metering import keys
from metering.errors import StoreError, StoreUnavailable
from metering.lifecycle import TabState
from metering.meter import Meter
from metering.outcomes import Tab, TabRef
from metering.sessions import SESSION_LINE_PREFIX
from metering.store import as_text, stream_entries, translated
from settlement import scripts, webhooks
from settlement.config import Checkpoint, SettlementConfig
from settlement.errors import SettlementError
from settlement.gateway import (
    CaptureResult,
    DeclineReason,
    Gateway,
    GatewayCredentialsRejected,
    GatewayUnavailable,
)
from settlement.ledger.errors import LedgerUnavailable
from settlement.ledger.ledger import Ledger
from settlement.ledger.settlements import SettlementFacts, ShowFacts
from settlement.outcomes import SettleCode, SettlementOutcome
from settlement.processors import holds
from settlement.processors.registry import ProcessorRegistry
from settlement.queue import entry_ref
from settlement.receipts import Receipts
from settlement.retry_rules import rule_for
from settlement.scripts import SettlementRecord
from settlement.statements import build_statement, statement_data
from settlement.subscriptions.scheduler import Renewals
from settlement.sweeper import Sweeper
from settlement.webhooks import Deliverer, WebhookConfig

if TYPE_CHECKING:
    from settlement.collection.timer import CollectionTimer

log = logging.getLogger("tipmeter.settlement")

GROUP: Final = "workers"
#: Reclaim rounds one burst makes at most (each takes up to read_count_max entries).
BURST_RECLAIM_ROUNDS_MAX: Final = 1_000
#: Webhook delivery rounds per sweep interval at most (each takes up to batch_max events).
WEBHOOK_ROUNDS_MAX: Final = 16
#: Pause after an unexpected failure of the loop itself (Redis gone), before trying again.
LOOP_ERROR_PAUSE_S: Final = 1.0

T = TypeVar("T")


def settlement_id(ref: TabRef) -> str:
    """The id of a tab's settlement: ``customer/tab_id`` (``/`` never occurs in ids)."""
    return keys.tab_index_member(ref.customer, ref.tab_id)


def capture_key(ref: TabRef) -> str:
    """The gateway idempotency key of a tab's one capture."""
    return f"capture:{settlement_id(ref)}"


def void_key(ref: TabRef) -> str:
    """The gateway idempotency key of the release of a tab's hold."""
    return f"void:{settlement_id(ref)}"


class SettleStatus(StrEnum):
    """What handling one tab came to."""

    SETTLED = "settled"
    FAILED = "failed"
    VOIDED = "voided"
    EXPIRED = "expired"
    DONE_BEFORE = "done_before"  # the tab had its outcome and follow-ups already
    NOT_FOUND = "not_found"  # no such tab
    NOT_FROZEN = "not_frozen"  # the tab is open: nothing to settle (never queued that way)
    RETRY_LATER = "retry_later"  # the gateway or a queue was unavailable; entry left pending


_STATUS_OF: Final = {
    SettlementOutcome.CAPTURED: SettleStatus.SETTLED,
    SettlementOutcome.DECLINED: SettleStatus.FAILED,
    SettlementOutcome.VOIDED: SettleStatus.VOIDED,
    SettlementOutcome.EXPIRED: SettleStatus.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class BurstReport:
    """What one burst did: statuses of the tabs handled, entries acknowledged, left, dead."""

    statuses: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    left_pending: int = 0
    dead_lettered: int = 0
    swept: int = 0


class Worker:
    """Settles the tabs on the settlement stream; also sweeps the tab index and sends webhooks.

    Run it as an asyncio task with ``await worker.run(stop_event)``, or drain once with
    :meth:`run_burst`. Several workers (processes or tasks) may run at once, each with its own
    ``consumer`` name.
    """

    def __init__(
        self,
        meter: Meter,
        gateway: Gateway | ProcessorRegistry,
        *,
        ledger: Ledger,
        config: SettlementConfig | None = None,
        webhook_config: WebhookConfig | None = None,
        consumer: str | None = None,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
        collection: CollectionTimer | None = None,
    ) -> None:
        self.meter = meter
        #: Told each :class:`Checkpoint` a settlement passes (the crash tests' way in).
        self._on_checkpoint = on_checkpoint or _no_checkpoint
        self.store = meter.store
        self.clock = meter.clock
        #: Every processor; a single gateway serves as a registry of one.
        self.processors = (
            gateway if isinstance(gateway, ProcessorRegistry) else ProcessorRegistry.single(gateway)
        )
        self.ledger = ledger
        self.config = config if config is not None else SettlementConfig()
        self.webhook_config = webhook_config if webhook_config is not None else WebhookConfig()
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.sweeper = Sweeper(meter, self.config)
        #: Collection's sweep and webhook relay, on this loop's timer (docs/collection.md).
        self.collection = collection
        # Memberships renew on the periodic loop too (docs/subscriptions.md).
        self.renewals = Renewals.for_worker(
            ledger.database, self.processors, self.config.claim_idle_ms
        )
        #: Receipts of Post Pay invoices and credit notes (docs/invoices.md); set by the
        #: runner with the deployment's notifier, none sent without one.
        self.receipts: Receipts | None = None
        self.deliverer = (
            Deliverer(
                self.store, self.clock, self.webhook_config, on_delivered=ledger.record_delivery
            )
            if self.webhook_config.enabled
            else None
        )
        self._claim_cursor = "0-0"
        self._group_ready = False
        # Read no more than can be worked on at once: an entry read is pending (and counts a
        # delivery) until acknowledged, so entries read ahead would only wait, and be counted
        # again if this worker died.
        self._batch = min(self.config.read_count_max, self.config.concurrency_max)

    # -- the stream --------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the stream and the consumer group if they do not exist (idempotent)."""
        if self._group_ready:
            return
        try:
            await self.store.client.xgroup_create(keys.settle_queue(), GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreError(f"cannot create the consumer group: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise StoreUnavailable(f"Redis unavailable: {exc}") from exc
        self._group_ready = True

    async def _read_new(self, block_ms: int | None) -> list[tuple[str, dict[str, bytes]]]:
        with translated():
            reply = await self.store.client.xreadgroup(
                GROUP,
                self.consumer,
                {keys.settle_queue(): ">"},
                count=self._batch,
                block=block_ms,
            )
        entries: list[tuple[str, dict[str, bytes]]] = []
        streams: Any = reply or []
        for _, stream in streams:
            entries.extend(stream_entries(stream))
        return entries

    async def _reclaim(self) -> tuple[list[tuple[str, dict[str, bytes]]], dict[str, int]]:
        """Take over entries idle for claim_idle_ms; return them with their delivery counts."""
        with translated():
            reply = await self.store.client.xautoclaim(
                keys.settle_queue(),
                GROUP,
                self.consumer,
                min_idle_time=self.config.claim_idle_ms,
                start_id=self._claim_cursor,
                count=self._batch,
            )
        self._claim_cursor = as_text(reply[0])
        entries = stream_entries(reply[1])
        gone = [as_text(i) for i in (reply[2] if len(reply) > 2 else [])]
        if gone:
            # Entries deleted from the stream but still pending (acknowledged by XDEL only):
            # nothing to do for them but to clear them from the group.
            with translated():
                await self.store.client.xack(keys.settle_queue(), GROUP, *gone)
        counts: dict[str, int] = {}
        if entries:
            with translated():
                pending = await self.store.client.xpending_range(
                    keys.settle_queue(),
                    GROUP,
                    min=entries[0][0],
                    max=entries[-1][0],
                    count=len(entries) + self._batch,
                    consumername=self.consumer,
                )
            counts = {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return entries, counts

    async def _ack(self, entry_id: str) -> None:
        with translated():
            async with self.store.client.pipeline(transaction=False) as pipe:
                pipe.xack(keys.settle_queue(), GROUP, entry_id)
                pipe.xdel(keys.settle_queue(), entry_id)
                await pipe.execute()

    async def _uncount(self, entry_id: str, deliveries: int) -> None:
        """Keep an entry pending without counting this delivery against the poison bound.

        An unavailable gateway (or a full webhook queue) says nothing about the entry itself:
        an outage longer than deliveries_max claim periods must not dead-letter every tab. The
        entry stays ours and idle from now, so it is retried after the claim bound as before.
        """
        with translated():
            await self.store.client.xclaim(
                keys.settle_queue(),
                GROUP,
                self.consumer,
                0,
                [entry_id],
                retrycount=max(deliveries - 1, 0),
                justid=True,
            )

    async def _dead_letter(
        self, entry_id: str, fields: dict[str, bytes], ref: TabRef | None, why: str
    ) -> None:
        now_ms = self.clock.now_ms()
        letter: dict[Any, Any] = {**fields, "entry": entry_id, "why": why, "dead_at": now_ms}
        with translated():
            async with self.store.client.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    keys.settle_dead_letters(),
                    letter,
                    maxlen=self.config.dead_letters_max,
                    approximate=True,
                )
                if ref is not None:
                    # The sweeper leaves a dead-lettered tab alone (it would only fail again);
                    # an operator requeues it with settlement.queue.enqueue after a fix.
                    pipe.hset(keys.tab(ref.customer, ref.tab_id), "dead_lettered_at", now_ms)
                await pipe.execute()
        await self._ack(entry_id)
        log.error(
            "settlement entry dead-lettered",
            extra={"fields": {"entry": entry_id, "why": why, "tab": _describe(ref)}},
        )

    # -- one entry ---------------------------------------------------------------------------

    async def _handle(
        self, entry_id: str, fields: dict[str, bytes], deliveries: int, report: _Tally
    ) -> None:
        ref = entry_ref(fields)
        if ref is None:
            await self._dead_letter(entry_id, fields, None, "malformed entry")
            report.dead += 1
            return
        try:
            status = await self.settle_tab(ref)
        except (GatewayUnavailable, StoreUnavailable, LedgerUnavailable) as exc:
            # Rejected credentials fail every call until an operator fixes the key: the entry
            # waits uncounted like in an outage, never dead-lettered, and the log says so loudly.
            level = (
                logging.ERROR if isinstance(exc, GatewayCredentialsRejected) else logging.WARNING
            )
            log.log(
                level,
                "settlement deferred",
                extra={"fields": {"tab": _describe(ref), "why": str(exc)}},
            )
            status = SettleStatus.RETRY_LATER
        except Exception as exc:
            # A refused request, a broken invariant, or a bug met on this tab: retrying may not
            # help, and one tab must not stop the worker. Leave it pending until the delivery
            # bound, then dead-letter it with the reason.
            log.exception(
                "settlement failed", extra={"fields": {"tab": _describe(ref), "why": repr(exc)}}
            )
            if deliveries >= self.config.deliveries_max:
                await self._dead_letter(entry_id, fields, ref, repr(exc))
                report.dead += 1
            else:
                report.left += 1
            return
        report.statuses[status.value] += 1
        if status is SettleStatus.RETRY_LATER:
            await self._uncount(entry_id, deliveries)
            report.left += 1
            return
        await self._ack(entry_id)
        report.acked += 1

    async def _process(
        self, entries: Sequence[tuple[str, dict[str, bytes]]], counts: dict[str, int], tally: _Tally
    ) -> None:
        limit = asyncio.Semaphore(self.config.concurrency_max)

        async def one(entry_id: str, fields: dict[str, bytes]) -> None:
            deliveries = counts.get(entry_id, 1)
            async with limit:
                if deliveries > self.config.deliveries_max:
                    await self._dead_letter(
                        entry_id, fields, entry_ref(fields), f"delivered {deliveries} times"
                    )
                    tally.dead += 1
                    return
                await self._handle(entry_id, fields, deliveries, tally)

        await asyncio.gather(*(one(entry_id, fields) for entry_id, fields in entries))

    # -- one tab -----------------------------------------------------------------------------

    async def settle_tab(self, ref: TabRef) -> SettleStatus:
        """Take one tab through every remaining step (see the module docstring).

        Safe to call any number of times, from any number of workers, at any step.
        """
        found = await scripts.read_settlement(self.store, ref)
        if found is None:
            return SettleStatus.NOT_FOUND
        tab, record = found
        if tab.state is TabState.OPEN:
            return SettleStatus.NOT_FROZEN
        if tab.state is scripts.SETTLING:
            if not await self._settle_frozen(tab):
                return SettleStatus.RETRY_LATER
            self._on_checkpoint(Checkpoint.AFTER_RECORD)
            found = await scripts.read_settlement(self.store, ref)
            if found is None:
                raise SettlementError(f"tab {_describe(ref)} vanished while settling")
            tab, record = found
        elif record.followups_done:
            return SettleStatus.DONE_BEFORE
        if record.outcome is None:
            # A state beyond settling without a recorded outcome was not written by settlement
            # (e.g. collection acting on a tab it created); nothing is ours to do.
            return SettleStatus.DONE_BEFORE
        if not record.followups_done and not await self._followups(tab, record):
            return SettleStatus.RETRY_LATER
        return _STATUS_OF[record.outcome]

    async def _call(self, call: Awaitable[T]) -> T:
        """Await a gateway call within the bound; past it the outcome is unknown (retry)."""
        try:
            return await asyncio.wait_for(call, self.config.gateway_timeout_s)
        except TimeoutError:
            raise GatewayUnavailable(
                f"no answer in {self.config.gateway_timeout_s:g} s; retried with the same key"
            ) from None

    async def _settle_frozen(self, tab: Tab) -> bool:
        """Steps 2–4 for a frozen tab; False if the outcome could not be decided yet."""
        ref = tab.ref
        build_statement(tab, SettlementRecord())  # raises if the lines do not explain the amount
        begin = await scripts.begin_settlement(
            self.store, ref, key=capture_key(ref), now_ms=self.clock.now_ms()
        )
        if begin.code is not SettleCode.APPLIED and begin.code is not SettleCode.DUPLICATE:
            return True  # recorded by another worker meanwhile: go on with the follow-ups
        self._on_checkpoint(Checkpoint.BEFORE_GATEWAY)
        gateway = self.processors.for_processor(tab.processor)
        amount = begin.amount_minor
        now_ms = self.clock.now_ms()
        if amount == 0:
            released = 0
            if now_ms < begin.capture_before_ms and tab.second_holds:
                released = await holds.void_parts(
                    gateway, tab, begin.auth_ref, void_key=void_key(ref), call=self._call
                )
            elif now_ms < begin.capture_before_ms:
                voided = await self._call(
                    gateway.void(idempotency_key=void_key(ref), auth_ref=begin.auth_ref)
                )
                released = voided.released_minor
            # else: the hold has lapsed by itself; there is nothing left to release.
            self._on_checkpoint(Checkpoint.AFTER_GATEWAY)
            await self._record(ref, SettlementOutcome.VOIDED, released_minor=released)
            return True
        if now_ms >= begin.capture_before_ms - self.config.capture_guard_ms:
            prior = None
            if begin.attempts > 1 and tab.second_holds:
                split = holds.parts(tab, begin.auth_ref, amount)
                prior = await holds.captured_parts(gateway, split, call=self._call)
            elif begin.attempts > 1:
                # An earlier attempt may have captured in time; the hold's processor tells.
                found = await self._call(gateway.lookup_authorization(begin.auth_ref))
                prior = found.capture_result() if found is not None else None
            if prior is not None:
                await self._record_capture(ref, prior)
            else:
                await self._record(ref, SettlementOutcome.EXPIRED, decline_reason="hold_expired")
            return True
        if tab.second_holds:
            # Raised by a second hold at a processor without increments: one capture per hold.
            result = await holds.capture_parts(
                gateway,
                holds.parts(tab, begin.auth_ref, amount),
                capture_key=capture_key(ref),
                void_key=void_key(ref),
                call=self._call,
            )
        else:
            result = await self._call(
                gateway.capture(
                    idempotency_key=capture_key(ref), auth_ref=begin.auth_ref, amount_minor=amount
                )
            )
        self._on_checkpoint(Checkpoint.AFTER_GATEWAY)
        await self._record_capture(ref, result)
        return True

    async def _record_capture(self, ref: TabRef, result: CaptureResult) -> None:
        if result.approved:
            await self._record(
                ref,
                SettlementOutcome.CAPTURED,
                captured_minor=result.amount_minor,
                capture_id=result.capture_id,
                released_minor=result.released_minor,
            )
            return
        reason = result.decline_reason or DeclineReason.DO_NOT_HONOR
        # The one table of card-network rules decides, with the network's advice when sent.
        retryable = rule_for(reason, mastercard_advice=result.advice_code).retryable
        await self._record(
            ref, SettlementOutcome.DECLINED, decline_reason=reason.value, retryable=retryable
        )

    async def _record(self, ref: TabRef, outcome: SettlementOutcome, **fields: Any) -> None:
        recorded = await scripts.record_settlement(
            self.store, ref, outcome, now_ms=self.clock.now_ms(), **fields
        )
        if recorded.code is SettleCode.AMOUNT_MISMATCH:
            raise SettlementError(
                f"tab {_describe(ref)}: the gateway captured {fields.get('captured_minor')}, "
                "not the recorded amount; nothing was recorded"
            )
        log.info(
            "settlement recorded",
            extra={
                "fields": {
                    "tab": _describe(ref),
                    "outcome": recorded.outcome,
                    "code": recorded.code.value,
                    "capture_id": recorded.capture_id,
                }
            },
        )

    async def _followups(self, tab: Tab, record: SettlementRecord) -> bool:
        """Step 5; False if the webhook queue is full (the entry is retried later)."""
        ref = tab.ref
        sid = settlement_id(ref)
        statement = build_statement(tab, record)
        shows = await self._shows(tab)
        await self.ledger.record_settlement(
            SettlementFacts(
                tab=tab,
                record=record,
                statement=statement,
                processor=record.processor or self.processors.default_name,
                shows=tuple(shows),
            )
        )
        self._on_checkpoint(Checkpoint.AFTER_LEDGER)
        if self.webhook_config.enabled:
            ok = record.outcome in (SettlementOutcome.CAPTURED, SettlementOutcome.VOIDED)
            event_type = webhooks.TAB_SETTLED if ok else webhooks.TAB_SETTLEMENT_FAILED
            code = await webhooks.enqueue(
                self.store,
                self.webhook_config,
                event_type,
                sid,
                statement_data(statement),
                self.clock.now_ms(),
            )
            if code is SettleCode.BUSY:
                return False
        # The ledger holds the outcome now: the tab's keys may expire (readers fall back to
        # the ledger), and marking the follow-ups done takes the tab out of the sweeper's way.
        await scripts.retire_tab(
            self.store,
            ref,
            [show.session_id for show in shows],
            retention_ms=self.config.retention_ms,
        )
        return True

    async def _shows(self, tab: Tab) -> list[ShowFacts]:
        """The shows a tab paid for, read from their session hashes (one per session line)."""
        shows = []
        for line in tab.lines:
            if line.kind != "session":
                continue
            session_id = line.line_id.removeprefix(SESSION_LINE_PREFIX)
            view = await self.meter.sessions.read(tab.ref.customer, session_id)
            if view is None:
                continue  # expired with an earlier retirement; the line itself is recorded
            shows.append(
                ShowFacts(
                    session_id=session_id,
                    room=view.room,
                    kind=view.kind,
                    rate_per_minute_minor=view.rate_per_minute_minor,
                    minimum_s=view.minimum_s,
                    started_at_ms=view.started_at_ms,
                    ended_at_ms=view.ended_at_ms,
                    billed_s=view.billed_s,
                    amount_minor=view.amount_minor,
                    end_reason=view.reason,
                )
            )
        return shows

    # -- loops -------------------------------------------------------------------------------

    async def run_burst(self, *, sweep: bool = True) -> BurstReport:
        """Sweep once, settle every entry waiting now (new ones, then reclaimable ones), deliver
        due webhooks once, and return. Entries that must wait (gateway unavailable) stay
        pending for a later run."""
        await self.setup()
        tally = _Tally()
        swept = 0
        if sweep:
            swept = (await self.sweeper.sweep()).looked_at
        while entries := await self._read_new(None):
            await self._process(entries, {}, tally)
        self._claim_cursor = "0-0"
        for _ in range(BURST_RECLAIM_ROUNDS_MAX):
            entries, counts = await self._reclaim()
            if entries:
                await self._process(entries, counts, tally)
            if self._claim_cursor == "0-0":
                break
        if self.collection is not None:
            await self.collection.tick(self.clock.now_ms(), force=True)
        if self.deliverer is not None:
            await self.deliverer.deliver_due()
        return BurstReport(
            statuses=tally.statuses,
            acked=tally.acked,
            left_pending=tally.left,
            dead_lettered=tally.dead,
            swept=swept,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Settle, reclaim, sweep and deliver until ``stop`` is set (then return promptly).

        Settling and the periodic work (sweeping, webhooks) run as two tasks, so a slow webhook
        receiver never holds up a capture.
        """
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._settle_loop(stop))
            tasks.create_task(self._periodic_loop(stop))

    async def _settle_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            tally = _Tally()
            try:
                await self.setup()
                entries = await self._read_new(self.config.block_ms)
                if entries:
                    await self._process(entries, {}, tally)
                claimed, counts = await self._reclaim()
                if claimed:
                    await self._process(claimed, counts, tally)
            except StoreError as exc:
                log.error("settlement loop failed", extra={"fields": {"why": repr(exc)}})
                # A Redis that restarted without its data has lost the group too (NOGROUP):
                # create it again on the next round (creating is idempotent).
                self._group_ready = False
                await _pause(stop, LOOP_ERROR_PAUSE_S)

    async def _periodic_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweeper.sweep()
                if self.collection is not None:
                    await self.collection.tick(self.clock.now_ms())  # never raises
                await self.renewals.run_due_logged(self.clock.now_ms())
                if self.receipts is not None:
                    await self.receipts.send_due_logged(self.clock.now_ms())
                if self.deliverer is not None:
                    for _ in range(WEBHOOK_ROUNDS_MAX):
                        round_ = await self.deliverer.deliver_due()
                        if round_.attempts < self.webhook_config.batch_max:
                            break
            except StoreError as exc:
                log.error("sweep or delivery failed", extra={"fields": {"why": repr(exc)}})
            await _pause(stop, self.config.sweep_interval_ms / 1_000)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@dataclass
class _Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    left: int = 0
    dead: int = 0


def _no_checkpoint(point: Checkpoint) -> None:
    """The production hook: a checkpoint passes unremarked."""


def _describe(ref: TabRef | None) -> str:
    return settlement_id(ref) if ref is not None else "?"
