"""The purchase scripts and one typed Python wrapper for each (as :mod:`metering.scripts`).

The wrappers build KEYS and ARGV (every key through :mod:`metering.keys`, every state through
:mod:`metering.purchase_lifecycle` and :mod:`metering.lifecycle`) and decode the reply. They
do not validate business input: :mod:`metering.purchases` does that first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from metering import keys
from metering.lifecycle import TabEvent, lua_states
from metering.lifecycle import sources as tab_sources
from metering.limits import Limits
from metering.outcomes import Balance, Code, RoomEventDraft, TabRef, no_balance
from metering.purchase_lifecycle import PurchaseEvent, PurchaseState, sources, target
from metering.scripts import reply_balance
from metering.store import LuaScript, Store, as_int, as_text

APPLY_PURCHASE: Final = LuaScript.load("apply_purchase")
VOID_PURCHASE: Final = LuaScript.load("void_purchase")
FULFIL_PURCHASE: Final = LuaScript.load("fulfil_purchase")
PUT_CATALOG_ITEM: Final = LuaScript.load("put_catalog_item")
REFUND_PURCHASE: Final = LuaScript.load("refund_purchase")

#: The purchase scripts; :data:`metering.meter.CORE_SCRIPTS` registers them.
PURCHASE_SCRIPTS: Final = (
    APPLY_PURCHASE,
    VOID_PURCHASE,
    FULFIL_PURCHASE,
    PUT_CATALOG_ITEM,
    REFUND_PURCHASE,
)

_SPENDABLE: Final = lua_states(tab_sources(TabEvent.SPEND))


def _states(states: frozenset[PurchaseState]) -> str:
    return "," + ",".join(sorted(states)) + ","


@dataclass(frozen=True, slots=True, kw_only=True)
class BuyerNote:
    """What a buyer attaches to a purchase (a request and the validated item both carry it):
    the name shown with it, whether to hide that name, and a message to the model."""

    viewer_name: str = ""
    anonymous: bool = False
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PurchaseNames(BuyerNote):
    """What every record of one purchase names, beside the buyer's note: whose it is, its id,
    the tab it was charged to, the room and the catalog item."""

    customer: str
    purchase_id: str
    tab_id: str
    room: str
    item_id: str
    item_name: str

    @property
    def ref(self) -> TabRef:
        """The tab the purchase was charged to."""
        return TabRef(self.customer, self.tab_id)


@dataclass(frozen=True, slots=True)
class PurchaseItem(PurchaseNames):
    """One validated purchase, ready for ``apply_purchase.lua``: the price is the catalog's."""

    item_kind: str
    amount_minor: int
    currency: str
    payout_bp: int
    state: PurchaseState
    until_ms: int


@dataclass(frozen=True, slots=True)
class PurchaseResult:
    """Outcome of a purchase. ``balance`` is the tab after it (the original one on a duplicate);
    ``state`` is the purchase's current state; ``event`` is set only when it was applied by this
    call (the caller relays it)."""

    code: Code
    purchase_id: str
    balance: Balance = field(default_factory=no_balance)
    seq: int = 0
    share_minor: int = 0
    applied_at_ms: int = 0
    state: PurchaseState | None = None
    until_ms: int = 0
    event: RoomEventDraft | None = None


@dataclass(frozen=True, slots=True)
class ResolveResult:
    """Outcome of fulfilling or voiding a purchase. ``balance`` is the tab after a void (empty
    for a fulfilment, which moves no money); ``voided_minor`` the amount a void freed."""

    code: Code
    purchase_id: str
    state: PurchaseState | None = None
    balance: Balance = field(default_factory=no_balance)
    voided_minor: int = 0
    event: RoomEventDraft | None = None


def _pstate(raw: Any) -> PurchaseState | None:
    text = as_text(raw)
    return PurchaseState(text) if text else None


def _event(
    customer: str,
    purchase_id: str,
    kind: tuple[str, str],
    reply: Any,
    at: int,
    room: str,
    currency: str,
    earned: int,
) -> RoomEventDraft:
    """The room event a script queued: ``kind`` is (event key prefix, event type), as the script
    wrote them; its outbox id is at ``reply[at]``, its data right after."""
    prefix, event_type = kind
    return RoomEventDraft(
        customer=customer,
        room=room,
        event_key=f"{prefix}:{customer}:{purchase_id}",
        event_type=event_type,
        data=bytes(reply[at + 1]),
        currency=currency,
        earned_minor=earned,
        outbox_id=as_text(reply[at]),
    )


#: (event key prefix, event type) of each script's room event, as the scripts write them.
BOUGHT: Final = ("buy", "purchase")
VOIDED: Final = ("buy_void", "purchase_voided")
FULFILLED: Final = ("buy_done", "purchase_fulfilled")
REFUNDED: Final = ("buy_refund", "purchase_refunded")


async def apply_purchase(
    store: Store, item: PurchaseItem, *, now_ms: int, limits: Limits
) -> PurchaseResult:
    """Run ``apply_purchase.lua``: charge ``item`` at most once, never past the cap."""
    reply = await store.call(
        APPLY_PURCHASE,
        [
            keys.tab(item.customer, item.tab_id),
            keys.tab_lines(item.customer, item.tab_id),
            keys.purchase(item.customer, item.purchase_id),
            keys.outbox(item.customer),
            keys.customer_channel(item.customer),
        ],
        [
            now_ms,
            limits.op_ttl_ms,
            limits.tab_lines_max,
            limits.outbox_max,
            _SPENDABLE,
            limits.tip_min_minor,
            item.customer,
            item.purchase_id,
            item.tab_id,
            item.room,
            item.item_id,
            item.item_name,
            item.item_kind,
            item.amount_minor,
            item.currency,
            item.payout_bp,
            item.state,
            item.until_ms,
            "" if item.anonymous else item.viewer_name,
            1 if item.anonymous else 0,
            item.message,
        ],
    )
    code = Code(as_text(reply[0]))
    if len(reply) < 13:
        # A refusal that read the tab (currency_mismatch, tab_not_open) carries its burn too.
        burn = as_int(reply[5]) if len(reply) == 6 else 0
        balance = reply_balance(reply, burn=burn)
        return PurchaseResult(code=code, purchase_id=item.purchase_id, balance=balance)
    share = as_int(reply[6])
    event = None
    if code is Code.APPLIED:
        event = _event(
            item.customer,
            item.purchase_id,
            BOUGHT,
            reply,
            8,
            item.room,
            item.currency,
            share if item.state is PurchaseState.GRANTED else 0,
        )
    return PurchaseResult(
        code=code,
        purchase_id=item.purchase_id,
        balance=reply_balance(reply, burn=as_int(reply[10])),
        seq=as_int(reply[5]),
        share_minor=share,
        applied_at_ms=as_int(reply[7]),
        state=_pstate(reply[11]),
        until_ms=as_int(reply[12]),
        event=event,
    )


#: The events that void a pending request on an open tab (``void_purchase.lua``).
_VOIDS: Final = frozenset({PurchaseEvent.DECLINE, PurchaseEvent.EXPIRE})

#: The events that close a pending request on a settled line, the script each runs and the
#: room event it writes: the model's share is earned only when the request is done, not when
#: it was refunded.
_CLOSINGS: Final = {
    PurchaseEvent.FULFIL: (FULFIL_PURCHASE, FULFILLED),
    PurchaseEvent.REFUND: (REFUND_PURCHASE, REFUNDED),
}


async def resolve_purchase(
    store: Store,
    ref: TabRef,
    purchase_id: str,
    *,
    event: PurchaseEvent,
    room: str,
    currency: str,
    now_ms: int,
    limits: Limits,
) -> ResolveResult:
    """Run the script that resolves a pending request by ``event``.

    Decline or expire run ``void_purchase.lua``: void the request on an open tab (the line
    voided, the cap freed). Fulfil runs ``fulfil_purchase.lua`` (the model earns its share);
    refund runs ``refund_purchase.lua`` (the refunds flow moved the money first; this records
    the purchase's state) -- those two take the same keys and arguments and answer alike.

    ``room`` and ``currency`` name the room event's destination (the record's own values; the
    script writes the event from the record itself)."""
    args: list[str | int] = [now_ms, ref.customer, purchase_id, ref.tab_id]
    if event in _VOIDS:
        reply = await store.call(
            VOID_PURCHASE,
            [
                keys.tab(ref.customer, ref.tab_id),
                keys.tab_lines(ref.customer, ref.tab_id),
                keys.purchase(ref.customer, purchase_id),
                keys.outbox(ref.customer),
                keys.customer_channel(ref.customer),
            ],
            [
                *args,
                event.value,
                _states(sources(event)),
                target(event),
                _SPENDABLE,
                limits.outbox_max,
                limits.tip_min_minor,
            ],
        )
        code = Code(as_text(reply[0]))
        draft = None
        if code is Code.APPLIED:
            draft = _event(ref.customer, purchase_id, VOIDED, reply, 6, room, currency, 0)
        return ResolveResult(
            code=code,
            purchase_id=purchase_id,
            state=_pstate(reply[5]),
            balance=reply_balance(reply, burn=as_int(reply[9])),
            voided_minor=as_int(reply[8]),
            event=draft,
        )
    if event not in _CLOSINGS:
        raise ValueError(f"a pending request is not resolved by {event}")
    script, kind = _CLOSINGS[event]
    reply = await store.call(
        script,
        [
            keys.purchase(ref.customer, purchase_id),
            keys.tab_lines(ref.customer, ref.tab_id),
            keys.outbox(ref.customer),
        ],
        [*args, _states(sources(event)), target(event), limits.outbox_max],
    )
    code = Code(as_text(reply[0]))
    draft = None
    if code is Code.APPLIED:
        earned = as_int(reply[4]) if event is PurchaseEvent.FULFIL else 0
        draft = _event(ref.customer, purchase_id, kind, reply, 2, room, currency, earned)
    return ResolveResult(code=code, purchase_id=purchase_id, state=_pstate(reply[1]), event=draft)


async def put_catalog_item(
    store: Store, room: str, item_id: str, item_json: str, *, items_max: int
) -> tuple[bool, int]:
    """Run ``put_catalog_item.lua``: (stored?, items in the catalog after the call)."""
    reply = await store.call(
        PUT_CATALOG_ITEM, [keys.room_catalog(room)], [item_id, item_json, items_max]
    )
    return as_text(reply[0]) == "applied", as_int(reply[1])
