"""Settlement's Lua scripts, and one typed Python wrapper for each.

The scripts live in ``settlement/lua/`` and share the money core's prelude. The wrappers build
KEYS and ARGV (every key through :mod:`metering.keys`, every state through
:mod:`metering.lifecycle`) and decode replies into :mod:`settlement.outcomes` types. The server
registers :data:`SETTLEMENT_SCRIPTS` next to :data:`metering.scripts.METERING_SCRIPTS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from metering import keys
from metering.lifecycle import TabEvent, TabState, lua_states, sources, target
from metering.outcomes import Tab, TabRef
from metering.scripts import read_tab_fields
from metering.store import LuaScript, Store, as_int, as_text
from settlement.outcomes import (
    BeginResult,
    RecordResult,
    SettleCode,
    SettlementOutcome,
)

LUA_DIR: Final = Path(__file__).parent / "lua"

BEGIN_SETTLEMENT: Final = LuaScript.load("begin_settlement", directory=LUA_DIR)
RECORD_SETTLEMENT: Final = LuaScript.load("record_settlement", directory=LUA_DIR)
RETIRE_TAB: Final = LuaScript.load("retire_tab", directory=LUA_DIR)
ENQUEUE_WEBHOOK: Final = LuaScript.load("enqueue_webhook", directory=LUA_DIR)
CLAIM_WEBHOOKS: Final = LuaScript.load("claim_webhooks", directory=LUA_DIR)
FINISH_WEBHOOK: Final = LuaScript.load("finish_webhook", directory=LUA_DIR)

#: Every script of settlement; a Store that runs the worker registers these too.
SETTLEMENT_SCRIPTS: Final = (
    BEGIN_SETTLEMENT,
    RECORD_SETTLEMENT,
    RETIRE_TAB,
    ENQUEUE_WEBHOOK,
    CLAIM_WEBHOOKS,
    FINISH_WEBHOOK,
)

#: Which lifecycle event each outcome is.
OUTCOME_EVENTS: Final[Mapping[SettlementOutcome, TabEvent]] = {
    SettlementOutcome.CAPTURED: TabEvent.CAPTURE,
    SettlementOutcome.DECLINED: TabEvent.DECLINE,
    SettlementOutcome.VOIDED: TabEvent.VOID,
    SettlementOutcome.EXPIRED: TabEvent.EXPIRE,
}

#: The state a settlement runs in: the target of the freeze.
SETTLING: Final = target(TabEvent.FREEZE)
#: The states whose keys may expire once the ledger holds the outcome: every state after
#: settling (the targets of the settlement outcomes, and what collection may lead them to).
RETIRABLE: Final = frozenset(TabState) - {TabState.OPEN, SETTLING}


async def begin_settlement(store: Store, ref: TabRef, *, key: str, now_ms: int) -> BeginResult:
    """Run ``begin_settlement.lua``: fix the amount to settle and count an attempt."""
    reply = await store.call(
        BEGIN_SETTLEMENT,
        [keys.tab(ref.customer, ref.tab_id)],
        [key, now_ms, lua_states(frozenset({SETTLING}))],
    )
    return BeginResult(
        code=SettleCode(as_text(reply[0])),
        state=as_text(reply[1]),
        amount_minor=as_int(reply[2]),
        auth_ref=as_text(reply[3]),
        capture_before_ms=as_int(reply[4]),
        currency=as_text(reply[5]),
        attempts=as_int(reply[6]),
    )


async def record_settlement(
    store: Store,
    ref: TabRef,
    outcome: SettlementOutcome,
    *,
    now_ms: int,
    captured_minor: int = 0,
    capture_id: str = "",
    released_minor: int = 0,
    decline_reason: str = "",
    retryable: bool = False,
) -> RecordResult:
    """Run ``record_settlement.lua``: give the tab its one outcome."""
    event = OUTCOME_EVENTS[outcome]
    reply = await store.call(
        RECORD_SETTLEMENT,
        [keys.tab(ref.customer, ref.tab_id), keys.customer_channel(ref.customer)],
        [
            outcome.value,
            lua_states(sources(event) & frozenset({SETTLING})),
            target(event),
            now_ms,
            captured_minor,
            capture_id,
            released_minor,
            decline_reason,
            "1" if retryable else "0",
            ref.tab_id,
        ],
    )
    return RecordResult(
        code=SettleCode(as_text(reply[0])),
        state=as_text(reply[1]),
        outcome=as_text(reply[2]),
        capture_id=as_text(reply[3]),
        outcome_at_ms=as_int(reply[4]),
    )


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    """What settlement wrote on a tab (all empty while nothing was written)."""

    amount_minor: int | None = None
    idempotency_key: str = ""
    started_at_ms: int = 0
    attempts: int = 0
    outcome: SettlementOutcome | None = None
    outcome_at_ms: int = 0
    captured_minor: int = 0
    capture_id: str = ""
    released_minor: int = 0
    decline_reason: str = ""
    retryable: bool = False
    followups_done: bool = False
    dead_lettered_at_ms: int = 0
    #: The processor holding the tab's authorization ('' on tabs opened before it was kept).
    processor: str = ""


def _text(fields: Mapping[str, Any], name: str) -> str:
    raw = fields.get(name)
    return as_text(raw) if raw is not None else ""


def _int(fields: Mapping[str, Any], name: str) -> int:
    raw = fields.get(name)
    return as_int(raw) if raw is not None and raw != b"" else 0


def decode_record(fields: Mapping[str, Any]) -> SettlementRecord:
    """Decode the settlement fields of a tab hash (as a ``{name: raw}`` mapping)."""
    amount = fields.get("settle_amount")
    outcome = _text(fields, "outcome")
    return SettlementRecord(
        amount_minor=as_int(amount) if amount is not None else None,
        idempotency_key=_text(fields, "settle_key"),
        started_at_ms=_int(fields, "settle_started_at"),
        attempts=_int(fields, "settle_attempts"),
        outcome=SettlementOutcome(outcome) if outcome else None,
        outcome_at_ms=_int(fields, "outcome_at"),
        captured_minor=_int(fields, "captured"),
        capture_id=_text(fields, "capture_id"),
        released_minor=_int(fields, "released"),
        decline_reason=_text(fields, "decline_reason"),
        retryable=_text(fields, "retryable") == "1",
        followups_done=_text(fields, "followups_done") == "1",
        dead_lettered_at_ms=_int(fields, "dead_lettered_at"),
        processor=_text(fields, "processor"),
    )


async def read_settlement(store: Store, ref: TabRef) -> tuple[Tab, SettlementRecord] | None:
    """Read a tab, its lines and its settlement record from one instant (``read_tab.lua``).

    None when there is no such tab.
    """
    found = await read_tab_fields(store, ref)
    if found is None:
        return None
    tab, fields = found
    return tab, decode_record(fields)


async def retire_tab(
    store: Store, ref: TabRef, session_ids: Sequence[str], *, retention_ms: int
) -> SettleCode:
    """Run ``retire_tab.lua``: mark the follow-ups done and let the tab's keys (and those of
    the shows it paid for) expire after ``retention_ms``. Call it only once the outcome is in
    the ledger of record."""
    reply = await store.call(
        RETIRE_TAB,
        [
            keys.tab(ref.customer, ref.tab_id),
            keys.tab_lines(ref.customer, ref.tab_id),
            *(keys.session(ref.customer, sid) for sid in session_ids),
        ],
        [retention_ms, lua_states(RETIRABLE)],
    )
    return SettleCode(as_text(reply[0]))


_WEBHOOK_QUEUE_KEYS: Final = (
    keys.webhook_events(),
    keys.webhook_attempts(),
    keys.webhook_due(),
    keys.webhook_sent(),
)


async def enqueue_webhook(
    store: Store, *, event_id: str, body: bytes, now_ms: int, events_max: int
) -> SettleCode:
    """Run ``enqueue_webhook.lua``: queue an event once (applied, duplicate or busy)."""
    reply = await store.call(
        ENQUEUE_WEBHOOK, _WEBHOOK_QUEUE_KEYS, [event_id, body, now_ms, events_max]
    )
    return SettleCode(as_text(reply[0]))


@dataclass(frozen=True, slots=True)
class ClaimedWebhook:
    """A webhook event leased to this deliverer."""

    event_id: str
    body: bytes
    attempts: int


async def claim_webhooks(
    store: Store, *, now_ms: int, lease_ms: int, count_max: int
) -> list[ClaimedWebhook]:
    """Run ``claim_webhooks.lua``: the due events, each leased for ``lease_ms``."""
    flat = await store.call(CLAIM_WEBHOOKS, _WEBHOOK_QUEUE_KEYS[:3], [now_ms, lease_ms, count_max])
    return [
        ClaimedWebhook(as_text(flat[i]), bytes(flat[i + 1]), as_int(flat[i + 2]))
        for i in range(0, len(flat), 3)
    ]


async def finish_webhook(
    store: Store,
    *,
    event_id: str,
    delivered: bool,
    now_ms: int,
    next_attempt_ms: int,
    sent_window_ms: int,
    sent_max: int,
    dead_max: int,
    failure: str,
) -> tuple[SettleCode, int]:
    """Run ``finish_webhook.lua``: record one attempt; return the code and attempts so far."""
    reply = await store.call(
        FINISH_WEBHOOK,
        [*_WEBHOOK_QUEUE_KEYS, keys.webhook_dead_letters()],
        [
            event_id,
            "1" if delivered else "0",
            now_ms,
            next_attempt_ms,
            sent_window_ms,
            sent_max,
            dead_max,
            failure,
        ],
    )
    return SettleCode(as_text(reply[0])), as_int(reply[1])
