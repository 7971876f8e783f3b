"""Reconciliation: the ledger, Redis and each processor's own record, compared.

Three records of the same money must agree. For a window of settlement times,
:func:`reconcile` reads:

- the **ledger**'s settlements in the window;
- **Redis**'s tabs that have an outcome in the window and are still there (the tab index lists
  every tab until it is retired, so a tab whose outcome never reached the ledger is found);
- each **processor**'s answer for every capture key the ledger or Redis knows (``lookup``), and
  its whole list of captures where it can list them (the sandbox can; a processor that cannot
  is asked by key only).

and reports every :class:`Mismatch`, by kind:

=============================  ==============================================================
kind                           meaning
=============================  ==============================================================
``missing_from_ledger``        Redis recorded an outcome the ledger does not have (the
                               worker's follow-ups have not run: the sweeper will requeue it,
                               unless it keeps failing)
``amount_differs``             the ledger, Redis or the processor disagree on an amount
``capture_without_settlement``  the processor captured under a settlement's key, and no
                               settlement in the ledger (or Redis) claims it
``settled_without_capture``    the ledger says captured; the processor has no such capture
``unbalanced_entry``           a journal entry does not sum to zero (the database refuses
                               them; asked anyway)
=============================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from metering import keys
from metering.outcomes import TabRef
from metering.store import Store, as_int, as_text, translated
from settlement.gateway import CaptureResult, Gateway
from settlement.ledger import journal, settlements
from settlement.ledger.ledger import Ledger
from settlement.ledger.settlements import SettlementSummary, settlement_id_of
from settlement.ledger.times import ms
from settlement.sandbox import CaptureLogEntry

#: Tab index members read per round trip while scanning Redis.
SCAN_PAGE_MAX = 1_000
_CAPTURE_KEY_PREFIX = "capture:"


class MismatchKind(StrEnum):
    """Kinds of disagreement (see the module docstring)."""

    MISSING_FROM_LEDGER = "missing_from_ledger"
    AMOUNT_DIFFERS = "amount_differs"
    CAPTURE_WITHOUT_SETTLEMENT = "capture_without_settlement"
    SETTLED_WITHOUT_CAPTURE = "settled_without_capture"
    UNBALANCED_ENTRY = "unbalanced_entry"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One disagreement, with what each record says."""

    kind: MismatchKind
    subject: str  # a settlement id, a capture id or an entry id
    detail: str


@dataclass
class ReconcileReport:
    """What a reconciliation compared and found."""

    since: datetime
    until: datetime
    ledger_settlements: int = 0
    redis_outcomes: int = 0
    processor_lookups: int = 0
    processor_captures: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "ledger_settlements": self.ledger_settlements,
            "redis_outcomes": self.redis_outcomes,
            "processor_lookups": self.processor_lookups,
            "processor_captures": self.processor_captures,
            "mismatches": [
                {"kind": m.kind.value, "subject": m.subject, "detail": m.detail}
                for m in self.mismatches
            ],
        }

    def render(self) -> str:
        """The report as lines for a terminal: one line per mismatch, then the totals."""
        lines = [f"{m.kind.value}\t{m.subject}\t{m.detail}" for m in self.mismatches]
        lines.append(
            f"compared {self.ledger_settlements} ledger settlements, {self.redis_outcomes} "
            f"Redis outcomes, {self.processor_lookups} processor lookups and "
            f"{self.processor_captures} processor captures from {self.since.isoformat()} to "
            f"{self.until.isoformat()}: {len(self.mismatches)} mismatch(es)"
        )
        return "\n".join(lines) + "\n"


@runtime_checkable
class ListsCaptures(Protocol):
    """A processor that can list its captures (the sandbox; others are asked by key)."""

    async def listed_captures(self) -> list[CaptureLogEntry]:
        """Every capture, in commit order."""
        ...


@dataclass(frozen=True, slots=True)
class RedisOutcome:
    """A tab in Redis with a recorded outcome."""

    ref: TabRef
    outcome: str
    accrued_minor: int
    captured_minor: int
    capture_id: str
    outcome_at_ms: int


async def redis_outcomes(store: Store, since_ms: int, until_ms: int) -> list[RedisOutcome]:
    """Tabs still in Redis (listed in the tab index) whose outcome falls in the window."""
    found: list[RedisOutcome] = []
    wanted = ["outcome", "outcome_at", "accrued", "captured", "capture_id"]
    for shard in range(keys.TAB_INDEX_SHARDS):
        cursor = 0
        while True:
            with translated():
                cursor, members = await store.client.zscan(
                    keys.tab_index(shard), cursor, count=SCAN_PAGE_MAX
                )
            refs = [TabRef(*as_text(member).split("/", 1)) for member, _ in members]
            if refs:
                with translated():
                    async with store.client.pipeline(transaction=False) as pipe:
                        for ref in refs:
                            pipe.hmget(keys.tab(ref.customer, ref.tab_id), wanted)
                        rows = await pipe.execute()
                for ref, row in zip(refs, rows, strict=True):
                    if row[0] is None:
                        continue
                    at_ms = as_int(row[1])
                    if since_ms <= at_ms < until_ms:
                        found.append(
                            RedisOutcome(
                                ref,
                                as_text(row[0]),
                                as_int(row[2]),
                                as_int(row[3] or 0),
                                as_text(row[4] or b""),
                                at_ms,
                            )
                        )
            if cursor == 0:
                break
    return found


async def reconcile(
    ledger: Ledger,
    store: Store,
    processors: dict[str, Gateway],
    since: datetime,
    until: datetime,
) -> ReconcileReport:
    """Compare the three records for settlements in ``[since, until)`` (module docstring)."""
    report = ReconcileReport(since, until)
    async with ledger.database.connection() as conn:
        recorded = await settlements.between(conn, since, until)
        unbalanced = await journal.unbalanced_entries(conn)
    report.ledger_settlements = len(recorded)
    by_id = {s.settlement_id: s for s in recorded}
    for entry_id in unbalanced:
        report.mismatches.append(
            Mismatch(MismatchKind.UNBALANCED_ENTRY, entry_id, "postings do not sum to zero")
        )

    live = await redis_outcomes(store, ms(since), ms(until))
    report.redis_outcomes = len(live)
    missing = [o for o in live if settlement_id_of(o.ref) not in by_id]
    async with ledger.database.connection() as conn:
        elsewhere = await settlements.recorded_ids(conn, [settlement_id_of(o.ref) for o in missing])
    for outcome in live:
        sid = settlement_id_of(outcome.ref)
        known = by_id.get(sid)
        if known is None and sid not in elsewhere:
            report.mismatches.append(
                Mismatch(
                    MismatchKind.MISSING_FROM_LEDGER,
                    sid,
                    f"Redis: {outcome.outcome} {outcome.captured_minor} "
                    f"({outcome.capture_id or 'no capture'}); the ledger has no settlement",
                )
            )
        elif known is not None and (
            known.accrued_minor != outcome.accrued_minor
            or known.captured_minor != outcome.captured_minor
        ):
            report.mismatches.append(
                Mismatch(
                    MismatchKind.AMOUNT_DIFFERS,
                    sid,
                    f"ledger: accrued {known.accrued_minor}, captured {known.captured_minor}; "
                    f"Redis: accrued {outcome.accrued_minor}, captured "
                    f"{outcome.captured_minor}",
                )
            )

    await _against_processors(report, recorded, processors)
    claimed = set(by_id) | set(elsewhere) | {settlement_id_of(o.ref) for o in live}
    await _unclaimed_captures(report, processors, claimed, ledger)
    return report


async def _against_processors(
    report: ReconcileReport, recorded: Sequence[SettlementSummary], processors: dict[str, Gateway]
) -> None:
    for settlement in recorded:
        if settlement.outcome != "captured":
            continue
        gateway = processors.get(settlement.processor)
        if gateway is None:
            continue
        found = await gateway.lookup(settlement.idempotency_key)
        report.processor_lookups += 1
        if not isinstance(found, CaptureResult) or not found.approved:
            report.mismatches.append(
                Mismatch(
                    MismatchKind.SETTLED_WITHOUT_CAPTURE,
                    settlement.settlement_id,
                    f"ledger: captured {settlement.captured_minor} as {settlement.capture_id}; "
                    f"{settlement.processor} has no capture for {settlement.idempotency_key}",
                )
            )
        elif found.amount_minor != settlement.captured_minor:
            report.mismatches.append(
                Mismatch(
                    MismatchKind.AMOUNT_DIFFERS,
                    settlement.settlement_id,
                    f"ledger: captured {settlement.captured_minor}; {settlement.processor}: "
                    f"{found.amount_minor} ({found.capture_id})",
                )
            )


async def _unclaimed_captures(
    report: ReconcileReport, processors: dict[str, Gateway], claimed: set[str], ledger: Ledger
) -> None:
    for name, gateway in processors.items():
        if not isinstance(gateway, ListsCaptures):
            continue
        captures = await gateway.listed_captures()
        report.processor_captures += len(captures)
        candidates = {
            c.idempotency_key.removeprefix(_CAPTURE_KEY_PREFIX): c
            for c in captures
            if c.idempotency_key.startswith(_CAPTURE_KEY_PREFIX)
        }
        unknown = [sid for sid in candidates if sid not in claimed]
        async with ledger.database.connection() as conn:
            anywhere = await settlements.recorded_ids(conn, unknown)
        for sid in unknown:
            if sid in anywhere:
                continue
            capture = candidates[sid]
            report.mismatches.append(
                Mismatch(
                    MismatchKind.CAPTURE_WITHOUT_SETTLEMENT,
                    capture.capture_id,
                    f"{name} captured {capture.amount_minor} {capture.currency} under "
                    f"{capture.idempotency_key}; no settlement claims it",
                )
            )
