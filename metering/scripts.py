"""The Lua scripts, and one typed Python wrapper for each.

The wrappers build KEYS and ARGV (every key through :mod:`metering.keys`, every state through
:mod:`metering.lifecycle`) and decode the reply into the types of :mod:`metering.outcomes`.
They do not validate business input; :mod:`metering.tabs` and :mod:`metering.tips` do that
first, so a refused input never reaches Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from metering import keys
from metering.lifecycle import SPENDABLE_LUA, TabEvent, TabState, lua_states, sources, target
from metering.limits import Limits
from metering.outcomes import (
    Balance,
    CapResult,
    Code,
    FreezeResult,
    Line,
    OpenResult,
    RoomEventDraft,
    SecondHold,
    Tab,
    TabRef,
    TipResult,
)
from metering.store import BatchedScript, LuaScript, Store, as_int, as_text

OPEN_TAB: Final = LuaScript.load("open_tab")
RAISE_CAP: Final = LuaScript.load("raise_cap")
FREEZE_TAB: Final = LuaScript.load("freeze_tab")
READ_TAB: Final = LuaScript.load("read_tab")
APPLY_TIPS: Final = LuaScript.load("apply_tips")
RELAY_ROOM_EVENTS: Final = LuaScript.load("relay_room_events")
ACK_OUTBOX: Final = LuaScript.load("ack_outbox")

#: Every script of the money core; a Store registers these.
METERING_SCRIPTS: Final = (
    OPEN_TAB,
    RAISE_CAP,
    FREEZE_TAB,
    READ_TAB,
    APPLY_TIPS,
    RELAY_ROOM_EVENTS,
    ACK_OUTBOX,
)


def reply_balance(reply: Sequence[Any], burn: int = 0) -> Balance:
    """Decode ``state, cap, accrued, ver`` (positions 1–4 of every tab reply)."""
    state = as_text(reply[1])
    return Balance(
        state=TabState(state) if state else None,
        cap_minor=as_int(reply[2]),
        accrued_minor=as_int(reply[3]),
        version=as_int(reply[4]),
        burn_minor_per_minute=burn,
    )


async def open_tab(
    store: Store,
    *,
    customer: str,
    tab_id: str,
    currency: str,
    cap_minor: int,
    auth_ref: str,
    capture_before_ms: int,
    now_ms: int,
    processor: str = "",
    processor_tried: str = "",
    payment_method: str = "",
) -> OpenResult:
    """Run ``open_tab.lua``: open a tab unless one is open for the customer and currency."""
    reply = await store.call(
        OPEN_TAB,
        [
            keys.tab(customer, tab_id),
            keys.open_tab(customer, currency),
            keys.customer_channel(customer),
        ],
        [
            tab_id,
            customer,
            currency,
            cap_minor,
            auth_ref,
            capture_before_ms,
            now_ms,
            TabState.OPEN,
            processor,
            processor_tried,
            payment_method,
        ],
    )
    return OpenResult(
        code=Code(as_text(reply[0])), tab_id=as_text(reply[5]), balance=reply_balance(reply)
    )


async def raise_cap(
    store: Store,
    ref: TabRef,
    *,
    cap_minor: int,
    auth_ref: str,
    capture_before_ms: int,
    now_ms: int,
    second_hold_minor: int = 0,
) -> CapResult:
    """Run ``raise_cap.lua``: raise the cap of an open tab to ``cap_minor`` (with
    ``second_hold_minor``, ``auth_ref`` is a second hold of that amount beside the first)."""
    reply = await store.call(
        RAISE_CAP,
        [keys.tab(ref.customer, ref.tab_id), keys.customer_channel(ref.customer)],
        [
            cap_minor,
            auth_ref,
            capture_before_ms,
            now_ms,
            lua_states(sources(TabEvent.RAISE_CAP)),
            ref.tab_id,
            "second" if second_hold_minor else "",
            second_hold_minor,
        ],
    )
    return CapResult(code=Code(as_text(reply[0])), balance=reply_balance(reply))


async def freeze_tab(
    store: Store, ref: TabRef, *, currency: str, reason: str, now_ms: int
) -> FreezeResult:
    """Run ``freeze_tab.lua``: stop all spending on a tab and record why."""
    reply = await store.call(
        FREEZE_TAB,
        [
            keys.tab(ref.customer, ref.tab_id),
            keys.open_tab(ref.customer, currency),
            keys.customer_channel(ref.customer),
        ],
        [
            ref.tab_id,
            reason,
            now_ms,
            lua_states(sources(TabEvent.FREEZE)),
            target(TabEvent.FREEZE),
        ],
    )
    return FreezeResult(
        code=Code(as_text(reply[0])),
        balance=reply_balance(reply),
        reason=as_text(reply[5]),
        frozen_at_ms=as_int(reply[6]),
    )


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {as_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def decode_line(line_id: str, packed: bytes) -> Line:
    """Decode one itemized line as ``apply_tips.lua`` (and the session and purchase scripts)
    write it."""
    raw = msgpack.unpackb(packed, raw=False)
    return Line(
        kind=raw["kind"],
        line_id=line_id,
        seq=raw["seq"],
        at_ms=raw["at"],
        room=raw["room"],
        amount_minor=raw["amount"],
        payout_bp=raw["bp"],
        share_minor=raw["share"],
        seconds=raw.get("seconds", 0),
        rate_per_minute_minor=raw.get("rate", 0),
        message=raw.get("msg", ""),
        item_id=raw.get("item", ""),
        item_name=raw.get("name", ""),
        item_kind=raw.get("ikind", ""),
        state=raw.get("state", ""),
        voided_minor=raw.get("was", 0),
        covered_s=raw.get("covered", 0),
        saved_minor=raw.get("saved", 0),
        session_kind=raw.get("skind", ""),
    )


async def read_tab(store: Store, ref: TabRef) -> Tab | None:
    """Run ``read_tab.lua``: the tab and its lines from one instant, or None if there is none."""
    found = await read_tab_fields(store, ref)
    return None if found is None else found[0]


async def read_tab_fields(store: Store, ref: TabRef) -> tuple[Tab, dict[str, Any]] | None:
    """:func:`read_tab`, with the tab hash's raw fields too (``{name: raw}``: settlement reads
    its own fields from the same instant)."""
    fields_flat, lines_flat = await store.call(
        READ_TAB, [keys.tab(ref.customer, ref.tab_id), keys.tab_lines(ref.customer, ref.tab_id)], []
    )
    if not fields_flat:
        return None
    f = _pairs(fields_flat)
    lines = sorted(
        (decode_line(line_id, packed) for line_id, packed in _pairs(lines_flat).items()),
        key=lambda line: line.seq,
    )
    tab = Tab(
        ref=ref,
        currency=as_text(f["currency"]),
        state=TabState(as_text(f["state"])),
        cap_minor=as_int(f["cap"]),
        accrued_minor=as_int(f["accrued"]),
        version=as_int(f["ver"]),
        auth_ref=as_text(f["auth_ref"]),
        capture_before_ms=as_int(f["capture_before"]),
        opened_at_ms=as_int(f["opened_at"]),
        active_at_ms=as_int(f["active_at"]),
        freeze_reason=as_text(f.get("freeze_reason", b"")),
        frozen_at_ms=as_int(f.get("frozen_at", 0)),
        exhausted_at_ms=as_int(f.get("exhausted_at", 0)),
        burn_minor_per_minute=as_int(f.get("burn", 0)),
        processor=as_text(f.get("processor", b"")),
        opened_cap_minor=as_int(f.get("opened_cap", 0)),
        payment_method=as_text(f.get("payment_method", b"")),
        second_holds=_second_holds(f),
        lines=tuple(lines),
    )
    return tab, f


def _second_holds(fields: dict[str, Any]) -> tuple[SecondHold, ...]:
    """The ``hold:<auth_ref>`` fields of a tab hash, earliest expiry first."""
    holds = []
    for name, value in fields.items():
        text = as_text(name)
        if text.startswith("hold:"):
            amount, _, expires = as_text(value).partition(":")
            holds.append(SecondHold(text.removeprefix("hold:"), int(amount), int(expires)))
    return tuple(sorted(holds, key=lambda h: (h.capture_before_ms, h.auth_ref)))


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class TipItem:
    """One validated tip, ready for ``apply_tips.lua``."""

    customer: str
    tip_id: str
    tab_id: str
    room: str
    amount_minor: int
    currency: str
    payout_bp: int
    viewer_name: str
    anonymous: bool
    message: str


def _tip_keys(item: TipItem) -> Sequence[str]:
    return (
        keys.tab(item.customer, item.tab_id),
        keys.tab_lines(item.customer, item.tab_id),
        keys.op(item.customer, item.tip_id),
        keys.outbox(item.customer),
        keys.customer_channel(item.customer),
        keys.customer_devices(item.customer),
    )


def _tip_args(item: TipItem) -> Sequence[str | int]:
    return (
        item.customer,
        item.tip_id,
        item.tab_id,
        item.room,
        item.amount_minor,
        item.currency,
        item.payout_bp,
        "" if item.anonymous else item.viewer_name,
        1 if item.anonymous else 0,
        item.message,
    )


_CODE_OF: Final = {code.value.encode(): code for code in Code}
_STATE_OF: Final[dict[bytes, TabState | None]] = {
    **{state.value.encode(): state for state in TabState},
    b"": None,
}


def _decode_tip(item: TipItem, reply: Any) -> TipResult:
    # The hot path: replies are [code, state, cap, accrued, ver, seq, share, at, outbox, data,
    # burn] with integer replies already ints, so this avoids the general helpers.
    code = _CODE_OF[reply[0]]
    size = len(reply)
    if size < 9:
        if size < 5:
            return TipResult(code=code, tip_id=item.tip_id, balance=Balance(None, 0, 0, 0))
        balance = reply_balance(reply, burn=reply[5] if size == 6 else 0)
        return TipResult(code=code, tip_id=item.tip_id, balance=balance)
    burn = reply[10] if size > 10 else 0
    balance = Balance(_STATE_OF[reply[1]], reply[2], reply[3], reply[4], burn)
    event = None
    if code is Code.APPLIED:
        event = RoomEventDraft(
            customer=item.customer,
            room=item.room,
            event_key=f"tip:{item.customer}:{item.tip_id}",
            event_type="tip",
            data=reply[9],
            currency=item.currency,
            earned_minor=reply[6],
            outbox_id=reply[8].decode(),
        )
    return TipResult(
        code=code,
        tip_id=item.tip_id,
        balance=balance,
        seq=reply[5],
        share_minor=reply[6],
        applied_at_ms=reply[7],
        event=event,
    )


APPLY_TIPS_BATCHED: Final[BatchedScript[TipItem, TipResult]] = BatchedScript(
    script=APPLY_TIPS,
    keys_per_item=6,
    args_per_item=10,
    item_keys=_tip_keys,
    item_args=_tip_args,
    decode=_decode_tip,
    replicated=True,
)


async def apply_tips(
    store: Store, items: Sequence[TipItem], *, now_ms: int, limits: Limits
) -> list[TipResult]:
    """Run ``apply_tips.lua`` over ``items``: each tip applied at most once, never past the cap."""
    fixed = (
        now_ms,
        limits.op_ttl_ms,
        limits.tab_lines_max,
        limits.outbox_max,
        SPENDABLE_LUA,
        limits.tip_min_minor,
    )
    return await store.call_batched(APPLY_TIPS_BATCHED, fixed, items)


def _relay_keys(event: RoomEventDraft) -> Sequence[str]:
    return (
        keys.room_events(event.room),
        keys.room_relayed(event.room),
        keys.room_earnings(event.room),
        keys.room_channel(event.room),
    )


def _relay_args(event: RoomEventDraft) -> Sequence[str | int | bytes]:
    return (event.event_key, event.event_type, event.data, event.currency, event.earned_minor)


def _decode_relay(event: RoomEventDraft, reply: Any) -> str | None:
    return reply[1].decode() if reply[0] == b"applied" else None


RELAY_ROOM_EVENTS_BATCHED: Final[BatchedScript[RoomEventDraft, str | None]] = BatchedScript(
    script=RELAY_ROOM_EVENTS,
    keys_per_item=4,
    args_per_item=5,
    item_keys=_relay_keys,
    item_args=_relay_args,
    decode=_decode_relay,
)


async def relay_room_events(
    store: Store, events: Sequence[RoomEventDraft], *, now_ms: int, limits: Limits
) -> list[str | None]:
    """Run ``relay_room_events.lua``: each event into its room once; its stream id, or None
    when it had been relayed before."""
    fixed = (now_ms, limits.room_events_max, limits.relayed_window_ms, limits.relayed_max)
    return await store.call_batched(RELAY_ROOM_EVENTS_BATCHED, fixed, events)


def _ack_keys(event: RoomEventDraft) -> Sequence[str]:
    return (keys.outbox(event.customer),)


def _ack_args(event: RoomEventDraft) -> Sequence[str]:
    return (event.outbox_id,)


def _decode_ack(event: RoomEventDraft, reply: Any) -> bool:
    return bool(reply == 1)


ACK_OUTBOX_BATCHED: Final[BatchedScript[RoomEventDraft, bool]] = BatchedScript(
    script=ACK_OUTBOX,
    keys_per_item=1,
    args_per_item=1,
    item_keys=_ack_keys,
    item_args=_ack_args,
    decode=_decode_ack,
)


async def ack_outbox(store: Store, events: Sequence[RoomEventDraft]) -> None:
    """Run ``ack_outbox.lua``: delete the outbox entries of events relayed into their rooms."""
    relayed = [event for event in events if event.outbox_id]
    if relayed:
        await store.call_batched(ACK_OUTBOX_BATCHED, (), relayed)
