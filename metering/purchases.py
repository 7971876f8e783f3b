"""Purchases: a catalog item bought against a tab, like a tip of its own kind.

A purchase is charged against the cap by one atomic step (``apply_purchase.lua``) with the same
rules as a tip: the client mints the purchase id and keeps it, so a retry returns the original
result; the cap is never exceeded; the line carries the model's share. An unlock is granted at
once. A request stays pending until the model fulfils it (``fulfil_purchase.lua``) or it is
declined or expires (``void_purchase.lua``: the line voided, the cap freed, before settlement).
The states and what moves them are :mod:`metering.purchase_lifecycle`'s table.

The price and name come from the model's catalog (``server/catalog_api.py`` checks the item);
this module validates the fields it is handed and never trusts a price from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from metering import keys, purchase_scripts
from metering.clock import Clock
from metering.keys import check_id, is_id
from metering.limits import Limits
from metering.money import is_currency, is_positive_amount
from metering.outcomes import Code, TabRef
from metering.purchase_lifecycle import ItemKind, PurchaseEvent, PurchaseState, bought_state
from metering.purchase_scripts import (
    BuyerNote,
    PurchaseItem,
    PurchaseNames,
    PurchaseResult,
    ResolveResult,
)
from metering.rooms import Rooms
from metering.store import Store, as_int, as_text, translated

#: Longest a request may wait for the model, and longest an unlock may last (a week: past it
#: the purchase record, kept ``op_ttl_ms``, could lapse before the request is resolved).
DURATION_MS_MAX: Final = 7 * 24 * 3600 * 1000

_KINDS: Final = frozenset(kind.value for kind in ItemKind)

#: Characters of an item's name.
ITEM_NAME_CHARS_MAX: Final = 80


def _is_text(value: object, chars_max: int) -> bool:
    return type(value) is str and len(value) <= chars_max and value.isprintable()


@dataclass(frozen=True, slots=True)
class PurchaseRequest(BuyerNote):
    """A purchase as the server resolved it from the catalog: the item, its price in the tab's
    currency, and how long it lasts (a request's time to be done, an unlock's duration).

    ``purchase_id`` is minted by the client and kept until the purchase is acknowledged; the
    buyer's name, anonymity and message are :class:`BuyerNote`'s (keyword-only).
    """

    purchase_id: str
    room: str
    item_id: str
    item_name: str
    item_kind: str  # an ItemKind value
    amount_minor: int
    currency: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class PurchaseView(PurchaseNames):
    """A purchase record as Redis holds it (the live state; kept ``op_ttl_ms``). Its
    ``viewer_name`` is empty when the buyer was anonymous."""

    item_kind: ItemKind
    amount_minor: int
    currency: str
    share_minor: int
    state: PurchaseState
    bought_at_ms: int
    until_ms: int
    reason: str = ""
    resolved_at_ms: int = 0


class Purchases:
    """Buys, fulfils and voids purchases; the caller relays each result's ``event``."""

    def __init__(self, store: Store, clock: Clock, limits: Limits, rooms: Rooms) -> None:
        self._store = store
        self._clock = clock
        self._limits = limits
        self._rooms = rooms

    def validate(self, request: PurchaseRequest) -> Code | None:
        """Return the code refusing ``request`` on its own fields, or None if they are valid.

        Codes, in order: invalid_id, invalid_currency, invalid_amount, invalid_kind,
        invalid_field (item name, duration, viewer name, message or anonymity malformed).
        """
        limits = self._limits
        if not (is_id(request.purchase_id) and is_id(request.room) and is_id(request.item_id)):
            return Code.INVALID_ID
        if not is_currency(request.currency):
            return Code.INVALID_CURRENCY
        if not is_positive_amount(request.amount_minor) or request.amount_minor > (
            limits.cap_max_minor
        ):
            return Code.INVALID_AMOUNT
        if request.item_kind not in _KINDS:
            return Code.INVALID_KIND
        if not (
            type(request.duration_ms) is int
            and 0 < request.duration_ms <= DURATION_MS_MAX
            and request.item_name
            and _is_text(request.item_name, ITEM_NAME_CHARS_MAX)
            and type(request.anonymous) is bool
            and _is_text(request.viewer_name, limits.viewer_name_chars_max)
            and _is_text(request.message, limits.message_chars_max)
        ):
            return Code.INVALID_FIELD
        return None

    async def buy(self, ref: TabRef, request: PurchaseRequest) -> PurchaseResult:
        """Charge ``request`` against tab ``ref``; relay the result's ``event`` after.

        Codes, in order: those of :meth:`validate`; then from Redis duplicate (the original
        result, with the purchase's current state), id_reused, tab_not_found,
        currency_mismatch, tab_not_open, over_cap, lines_full, busy, applied. Nothing is written
        unless the code is applied.
        """
        refused = self.validate(request)
        if refused is not None:
            return PurchaseResult(code=refused, purchase_id=str(request.purchase_id))
        check_id("customer", ref.customer)
        check_id("tab_id", ref.tab_id)
        now_ms = self._clock.now_ms()
        item = PurchaseItem(
            customer=ref.customer,
            purchase_id=request.purchase_id,
            tab_id=ref.tab_id,
            room=request.room,
            item_id=request.item_id,
            item_name=request.item_name,
            item_kind=request.item_kind,
            amount_minor=request.amount_minor,
            currency=request.currency,
            payout_bp=await self._rooms.payout_bp(request.room),
            state=bought_state(ItemKind(request.item_kind)),
            until_ms=now_ms + request.duration_ms,
            viewer_name=request.viewer_name,
            anonymous=request.anonymous,
            message=request.message,
        )
        return await purchase_scripts.apply_purchase(
            self._store, item, now_ms=now_ms, limits=self._limits
        )

    async def read(self, customer: str, purchase_id: str) -> PurchaseView | None:
        """The purchase record, or None when there is none (never bought, or lapsed)."""
        check_id("customer", customer)
        check_id("purchase_id", purchase_id)
        with translated():
            raw = await self._store.client.hgetall(keys.purchase(customer, purchase_id))
        if not raw:
            return None
        f = {as_text(k): v for k, v in raw.items()}
        return PurchaseView(
            customer=customer,
            purchase_id=purchase_id,
            tab_id=as_text(f["tab"]),
            room=as_text(f["room"]),
            item_id=as_text(f["item"]),
            item_name=as_text(f["name"]),
            item_kind=ItemKind(as_text(f["kind"])),
            amount_minor=as_int(f["amount"]),
            currency=as_text(f["currency"]),
            share_minor=as_int(f["share"]),
            state=PurchaseState(as_text(f["state"])),
            bought_at_ms=as_int(f["at"]),
            until_ms=as_int(f["until"]),
            reason=as_text(f.get("reason", b"")),
            resolved_at_ms=as_int(f.get("resolved_at", 0)),
            viewer_name=as_text(f.get("viewer", b"")),
            anonymous=f.get("anon") == b"1",
            message=as_text(f.get("message", b"")),
        )

    async def fulfil(self, customer: str, purchase_id: str) -> ResolveResult:
        """Mark a pending request done; relay the result's ``event`` after.

        Codes, in order: purchase_not_found, duplicate, purchase_not_pending, busy, applied.
        """
        return await self._resolve(customer, purchase_id, PurchaseEvent.FULFIL)

    async def refunded(self, customer: str, purchase_id: str) -> ResolveResult:
        """Record that a pending request was refunded after the capture (the refunds flow
        moved the money); relay the result's ``event`` after.

        Codes, in order: purchase_not_found, duplicate, purchase_not_pending, busy, applied.
        """
        return await self._resolve(customer, purchase_id, PurchaseEvent.REFUND)

    async def void(self, customer: str, purchase_id: str, event: PurchaseEvent) -> ResolveResult:
        """Void a pending request before settlement (``event``: decline or expire); relay the
        result's ``event`` after.

        Codes, in order: purchase_not_found, duplicate, purchase_not_pending, not_due (an
        expiry before the deadline), tab_not_open (the tab froze: refund after the capture),
        busy, applied.
        """
        if event not in (PurchaseEvent.DECLINE, PurchaseEvent.EXPIRE):
            raise ValueError(f"a void is a decline or an expiry, not {event}")
        return await self._resolve(customer, purchase_id, event)

    async def _resolve(
        self, customer: str, purchase_id: str, event: PurchaseEvent
    ) -> ResolveResult:
        """The record's tab, room and currency, then the script ``event`` runs on it."""
        view = await self.read(customer, purchase_id)
        if view is None:
            return ResolveResult(code=Code.PURCHASE_NOT_FOUND, purchase_id=purchase_id)
        return await purchase_scripts.resolve_purchase(
            self._store,
            view.ref,
            purchase_id,
            event=event,
            room=view.room,
            currency=view.currency,
            now_ms=self._clock.now_ms(),
            limits=self._limits,
        )
