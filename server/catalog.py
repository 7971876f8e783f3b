"""A model's catalog and the site's unlocks, and buying from them against a tab.

Theory of operation. Each model room keeps a catalog of at most :data:`ITEMS_PER_ROOM_MAX`
items in the Redis hash ``tm:{r:R}:catalog`` (item id → JSON); the cam site configures
site-wide unlocks (moderator status, a restricted channel, HD for the current show) in
``TIPMETER_SITE_UNLOCKS``, addressed in every room as ``site.<id>``. A purchase names an item;
the server reads its price in the tab's currency and its name here, never from the wire, and
hands them to the money core (:mod:`metering.purchases`), which charges the line atomically.

Limits per viewer and per show are counters in ``tm:{r:R}:sold`` reserved before the charge
and released when it is refused or the request is voided; a new show (:meth:`Shop.new_show`)
resets the per-show counters. A request, once charged, is queued for the model in
``tm:{r:R}:requests`` and listed by deadline in ``tm:{buys}:due`` for the expiry sweep; an
unlock grants an entitlement ``room/item`` until a time, in ``tm:{c:C}:entitled``. Those
follow-up writes are on other hash tags than the charge, so they are separate steps after it;
each is idempotent (a set member, a maximum).

Why Redis and not PostgreSQL for the catalog: the catalog is read on every purchase (the hot
path, beside the tab's keys), it is configuration rather than a record of money — the purchase
line carries the price and name it was charged at into the ledger — and the room's other
settings (payout rate, session prices) live in Redis already, persisted by its append-only file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

from metering import keys, purchase_scripts
from metering.keys import is_id
from metering.limits import Limits
from metering.meter import Meter
from metering.money import is_currency
from metering.outcomes import Code, TabRef
from metering.purchase_lifecycle import ItemKind, PurchaseEvent, PurchaseState
from metering.purchase_scripts import PurchaseResult, ResolveResult
from metering.purchases import DURATION_MS_MAX, ITEM_NAME_CHARS_MAX, PurchaseRequest, PurchaseView
from metering.store import as_int, as_text, translated

#: Items one room's catalog may hold.
ITEMS_PER_ROOM_MAX: Final = 50
#: Currencies one item may be priced in.
PRICES_PER_ITEM_MAX: Final = 8
#: Largest limit per viewer or per show.
LIMIT_MAX: Final = 1_000
#: Site-wide unlocks the settings may configure.
SITE_UNLOCKS_MAX: Final = 16
#: How a site-wide unlock's id is written in a room ("site.hd"); room items may not use it.
SITE_PREFIX: Final = "site."
#: Time a model has to do a request when its item names none (``TIPMETER_REQUEST_TTL_S``).
REQUEST_TTL_S_DEFAULT: Final = 900
#: Pending requests one room's queue lists at most (the oldest deadlines first).
QUEUE_READ_MAX: Final = 200
#: Due requests one expiry sweep voids at most.
EXPIRE_BATCH_MAX: Final = 100

_FIELDS: Final = frozenset(
    {"name", "kind", "prices", "active", "limit_per_viewer", "limit_per_show", "duration_s"}
)


class ShopCode(StrEnum):
    """Outcomes of buying that the catalog decides (the money core's are :class:`Code`)."""

    ITEM_NOT_FOUND = "item_not_found"
    ITEM_INACTIVE = "item_inactive"
    PRICE_MISSING = "price_missing"  # the item has no price in the tab's currency
    LIMIT_REACHED = "limit_reached"


class CatalogInvalid(ValueError):
    """An item as submitted is malformed: ``code`` is the API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """One item a viewer may buy: its prices are minor units per currency."""

    item_id: str
    name: str
    kind: ItemKind
    prices: Mapping[str, int]
    active: bool = True
    limit_per_viewer: int | None = None
    limit_per_show: int | None = None
    #: A request's time to be done (None: the site's default); an unlock's duration.
    duration_s: int | None = None
    site: bool = False

    def data(self) -> dict[str, Any]:
        """The item as JSON-ready data (the API, the stored form, the wire)."""
        return {
            "item_id": self.item_id,
            "name": self.name,
            "kind": self.kind.value,
            "prices": dict(sorted(self.prices.items())),
            "active": self.active,
            "limit_per_viewer": self.limit_per_viewer,
            "limit_per_show": self.limit_per_show,
            "duration_s": self.duration_s,
            "site": self.site,
        }


def _bounded_or_none(raw: Mapping[str, Any], name: str, high: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= high:
        raise CatalogInvalid("invalid_field", f"{name} must be null or an integer in 1..{high}")
    return value


def parse_item(item_id: object, raw: object, limits: Limits, *, site: bool = False) -> CatalogItem:
    """Validate an item as submitted (the API's JSON body, or a site unlock from settings).

    Raises :class:`CatalogInvalid` with the API's error code: invalid_id, invalid_field,
    invalid_kind, invalid_currency, invalid_amount, amount_out_of_range.
    """
    if not is_id(item_id) or (not site and str(item_id).startswith(SITE_PREFIX)):
        raise CatalogInvalid(
            "invalid_id", f"item ids match [A-Za-z0-9_.-]{{1,64}} and do not start {SITE_PREFIX!r}"
        )
    if not isinstance(raw, dict):
        raise CatalogInvalid("invalid_field", "an item is a JSON object")
    unknown = sorted(set(raw) - _FIELDS - {"item_id", "site"})
    if unknown:
        raise CatalogInvalid("invalid_field", f"unknown item field(s): {', '.join(unknown)}")
    name = raw.get("name")
    if not (type(name) is str and 0 < len(name) <= ITEM_NAME_CHARS_MAX and name.isprintable()):
        raise CatalogInvalid(
            "invalid_field", f"name must be 1..{ITEM_NAME_CHARS_MAX} printable characters"
        )
    kind = raw.get("kind", "unlock" if site else None)
    if kind not in {k.value for k in ItemKind} or (site and kind != ItemKind.UNLOCK):
        raise CatalogInvalid("invalid_kind", "kind must be request or unlock (site: unlock)")
    prices = raw.get("prices")
    if not isinstance(prices, dict) or not 0 < len(prices) <= PRICES_PER_ITEM_MAX:
        raise CatalogInvalid(
            "invalid_field", f"prices maps 1..{PRICES_PER_ITEM_MAX} currencies to minor units"
        )
    for currency, price in prices.items():
        if not is_currency(currency):
            raise CatalogInvalid("invalid_currency", f"{currency!r} is not an accepted currency")
        if type(price) is not int or price <= 0:
            raise CatalogInvalid("invalid_amount", "a price is a positive integer of minor units")
        if not limits.tip_min_minor <= price <= limits.tip_max_minor:
            raise CatalogInvalid(
                "amount_out_of_range",
                f"a price is within {limits.tip_min_minor}..{limits.tip_max_minor}",
            )
    active = raw.get("active", True)
    if type(active) is not bool:
        raise CatalogInvalid("invalid_field", "active must be true or false")
    duration_s = _bounded_or_none(raw, "duration_s", DURATION_MS_MAX // 1000)
    if kind == ItemKind.UNLOCK and duration_s is None:
        raise CatalogInvalid("invalid_field", "an unlock needs duration_s (how long it lasts)")
    return CatalogItem(
        item_id=str(item_id),
        name=name,
        kind=ItemKind(kind),
        prices=dict(prices),
        active=active,
        limit_per_viewer=_bounded_or_none(raw, "limit_per_viewer", LIMIT_MAX),
        limit_per_show=_bounded_or_none(raw, "limit_per_show", LIMIT_MAX),
        duration_s=duration_s,
        site=site,
    )


def parse_site_unlocks(text: str, limits: Limits) -> tuple[CatalogItem, ...]:
    """Parse ``TIPMETER_SITE_UNLOCKS``: a JSON list of unlocks, each with its ``item_id``
    (written ``site.<id>`` in rooms), ``name``, ``prices`` and ``duration_s``. Raises
    ValueError naming what is wrong."""
    if not text.strip():
        return ()
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("expected a JSON list of unlocks") from None
    if not isinstance(raw, list) or len(raw) > SITE_UNLOCKS_MAX:
        raise ValueError(f"expected a JSON list of at most {SITE_UNLOCKS_MAX} unlocks")
    items = []
    for entry in raw:
        item_id = entry.get("item_id") if isinstance(entry, dict) else None
        try:
            items.append(parse_item(f"{SITE_PREFIX}{item_id}", entry, limits, site=True))
        except CatalogInvalid as exc:
            raise ValueError(f"unlock {item_id!r}: {exc}") from None
    if len({item.item_id for item in items}) != len(items):
        raise ValueError("two unlocks share an item_id")
    return tuple(items)


def _stored(raw: bytes | str, item_id: str, limits: Limits) -> CatalogItem:
    return parse_item(item_id, orjson.loads(raw), limits)


@dataclass(frozen=True, slots=True)
class BuyOutcome:
    """The answer to a purchase: a catalog refusal (``code`` a :class:`ShopCode`) or the money
    core's result (``result``, whose code ``code`` repeats)."""

    code: Code | ShopCode
    purchase_id: str
    item: CatalogItem | None = None
    result: PurchaseResult | None = None


@dataclass(slots=True)
class Shop:
    """The catalogs, the request queues and the entitlements, over the money core."""

    meter: Meter
    site_unlocks: tuple[CatalogItem, ...] = ()
    request_ttl_s: int = REQUEST_TTL_S_DEFAULT
    _site: dict[str, CatalogItem] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._site = {item.item_id: item for item in self.site_unlocks}

    # -- the catalog -----------------------------------------------------------------------

    async def items(self, room: str) -> list[CatalogItem]:
        """``room``'s own items, by id (the site's unlocks are :attr:`site_unlocks`)."""
        with translated():
            raw = await self.meter.store.client.hgetall(keys.room_catalog(room))
        limits = self.meter.limits
        found = [_stored(value, as_text(key), limits) for key, value in raw.items()]
        return sorted(found, key=lambda item: item.item_id)

    async def item(self, room: str, item_id: str) -> CatalogItem | None:
        """One item of ``room`` (``site.<id>``: a site unlock), or None."""
        if item_id.startswith(SITE_PREFIX):
            return self._site.get(item_id)
        with translated():
            raw = await self.meter.store.client.hget(keys.room_catalog(room), item_id)
        return None if raw is None else _stored(raw, item_id, self.meter.limits)

    async def put(self, room: str, item: CatalogItem) -> bool:
        """Add or replace ``item`` in ``room``'s catalog; False when the catalog is full."""
        stored, _ = await purchase_scripts.put_catalog_item(
            self.meter.store,
            room,
            item.item_id,
            orjson.dumps(item.data()).decode(),
            items_max=ITEMS_PER_ROOM_MAX,
        )
        return stored

    async def remove(self, room: str, item_id: str) -> bool:
        """Remove an item (purchases already made keep their line); False if there was none."""
        with translated():
            return bool(await self.meter.store.client.hdel(keys.room_catalog(room), item_id))

    async def new_show(self, room: str) -> None:
        """A new show starts in ``room``: every per-show limit counts from zero again."""
        ids = [item.item_id for item in await self.items(room)] + list(self._site)
        with translated():
            await self.meter.store.client.hdel(keys.room_sold(room), *(f"show:{i}" for i in ids))

    # -- buying ----------------------------------------------------------------------------

    def _counters(self, item: CatalogItem, customer: str) -> list[tuple[str, int]]:
        counters = []
        if item.limit_per_viewer is not None:
            counters.append((f"viewer:{item.item_id}:{customer}", item.limit_per_viewer))
        if item.limit_per_show is not None:
            counters.append((f"show:{item.item_id}", item.limit_per_show))
        return counters

    async def _reserve(self, room: str, counters: list[tuple[str, int]]) -> bool:
        """Count one more purchase on each counter, or none if any would pass its limit."""
        client = self.meter.store.client
        taken: list[str] = []
        with translated():
            for name, limit in counters:
                taken.append(name)
                if await client.hincrby(keys.room_sold(room), name, 1) > limit:
                    for undo in taken:
                        await client.hincrby(keys.room_sold(room), undo, -1)
                    return False
        return True

    async def _release(self, room: str, counters: list[tuple[str, int]]) -> None:
        with translated():
            for name, _ in counters:
                await self.meter.store.client.hincrby(keys.room_sold(room), name, -1)

    async def buy(
        self,
        ref: TabRef,
        *,
        currency: str,
        room: str,
        item_id: str,
        purchase_id: str,
        viewer_name: str = "",
        anonymous: bool = False,
        message: str = "",
    ) -> BuyOutcome:
        """Buy ``item_id`` of ``room`` with tab ``ref`` (in ``currency``, the tab's).

        Codes, in order: item_not_found, item_inactive, price_missing; the money core's
        validation codes; limit_reached (a new purchase past a limit); then the money core's
        (duplicate with the original result, id_reused, … applied: see
        :meth:`metering.purchases.Purchases.buy`).
        """
        item = await self.item(room, item_id) if is_id(item_id) and is_id(room) else None
        if item is None:
            return BuyOutcome(ShopCode.ITEM_NOT_FOUND, purchase_id)
        if not item.active:
            return BuyOutcome(ShopCode.ITEM_INACTIVE, purchase_id, item)
        price = item.prices.get(currency)
        if price is None:
            return BuyOutcome(ShopCode.PRICE_MISSING, purchase_id, item)
        duration_s = item.duration_s if item.duration_s is not None else self.request_ttl_s
        request = PurchaseRequest(
            purchase_id=purchase_id,
            room=room,
            item_id=item.item_id,
            item_name=item.name,
            item_kind=item.kind.value,
            amount_minor=price,
            currency=currency,
            duration_ms=duration_s * 1000,
            viewer_name=viewer_name,
            anonymous=anonymous,
            message=message,
        )
        refused = self.meter.purchases.validate(request)
        if refused is not None:
            return BuyOutcome(refused, purchase_id, item)
        counters = self._counters(item, ref.customer)
        # A retry of a purchase made before is answered by the money core (duplicate): it was
        # counted then, so it is not counted again.
        known = await self.meter.purchases.read(ref.customer, purchase_id)
        if counters and known is None and not await self._reserve(room, counters):
            return BuyOutcome(ShopCode.LIMIT_REACHED, purchase_id, item)
        result = await self.meter.buy(ref, request)
        if known is None and result.code is not Code.APPLIED:
            await self._release(room, counters)
        if result.code is Code.APPLIED:
            await self._after_buy(ref, room, item, result)
        return BuyOutcome(result.code, purchase_id, item, result)

    async def _after_buy(
        self, ref: TabRef, room: str, item: CatalogItem, result: PurchaseResult
    ) -> None:
        """The follow-ups of a charge, on other hash tags: the request's queue entries, or the
        unlock's entitlement (each idempotent)."""
        client = self.meter.store.client
        with translated():
            if item.kind is ItemKind.REQUEST:
                member = f"{ref.customer}/{ref.tab_id}/{result.purchase_id}"
                await client.zadd(keys.room_requests(room), {member: result.until_ms})
                due = f"{room}/{ref.customer}/{result.purchase_id}"
                await client.zadd(keys.requests_due(), {due: result.until_ms})
            else:
                await self._entitle(ref.customer, room, item.item_id, result.until_ms)

    async def _entitle(self, customer: str, room: str, what: str, until_ms: int) -> None:
        name = f"{room}/{what}"
        target = keys.entitlements(customer)
        client = self.meter.store.client
        current = await client.hget(target, name)
        if current is None or as_int(current) < until_ms:
            await client.hset(target, name, until_ms)
        await client.pexpire(target, DURATION_MS_MAX)

    # -- the request queue -----------------------------------------------------------------

    async def queue(self, room: str) -> list[PurchaseView]:
        """``room``'s pending requests, the nearest deadline first (at most
        :data:`QUEUE_READ_MAX`). Entries no longer pending are dropped from the queue."""
        client = self.meter.store.client
        with translated():
            members = await client.zrange(keys.room_requests(room), 0, QUEUE_READ_MAX - 1)
        pending = []
        for member in members:
            customer, _, purchase_id = as_text(member).split("/")
            view = await self.meter.purchases.read(customer, purchase_id)
            if view is not None and view.state is PurchaseState.PENDING:
                pending.append(view)
            else:
                await self._dequeue(room, customer, as_text(member), purchase_id)
        return pending

    async def customer_of(self, room: str, purchase_id: str) -> str | None:
        """The customer whose pending request ``purchase_id`` waits in ``room``'s queue (the
        model names a request by its id alone; the first of the queue wins should two
        customers have minted the same id)."""
        if not is_id(purchase_id):
            return None
        client = self.meter.store.client
        for key in (keys.room_requests(room), keys.room_resolved(room)):
            with translated():
                members = await client.zrange(key, 0, QUEUE_READ_MAX - 1, desc=True)
            for member in members:
                customer, _, found = as_text(member).split("/")
                if found == purchase_id:
                    return customer
        return None

    async def _dequeue(self, room: str, customer: str, member: str, purchase_id: str) -> None:
        client = self.meter.store.client
        with translated():
            # Remembered a while (the last QUEUE_READ_MAX), so that the model's repeated answer
            # finds the request it answered: duplicate, or purchase_not_pending.
            await client.zadd(keys.room_resolved(room), {member: self.meter.clock.now_ms()})
            await client.zremrangebyrank(keys.room_resolved(room), 0, -QUEUE_READ_MAX - 1)
            await self.meter.store.client.zrem(keys.room_requests(room), member)
            await self.meter.store.client.zrem(
                keys.requests_due(), f"{room}/{customer}/{purchase_id}"
            )

    async def _resolved(self, view: PurchaseView, result: ResolveResult, voided: bool) -> None:
        """After a fulfilment or a void: out of the queues; a void frees its limit counters. A
        void refused because the tab froze first leaves the queues too, owed a refund."""
        if result.code is Code.TAB_NOT_OPEN and voided:
            await self._owe_refund(view)
        if result.code in (Code.APPLIED, Code.DUPLICATE, Code.TAB_NOT_OPEN):
            member = f"{view.customer}/{view.tab_id}/{view.purchase_id}"
            await self._dequeue(view.room, view.customer, member, view.purchase_id)
        if voided and result.code is Code.APPLIED:
            item = await self.item(view.room, view.item_id)
            if item is not None:
                await self._release(view.room, self._counters(item, view.customer))

    async def _owe_refund(self, view: PurchaseView) -> None:
        """List a request declined or expired after its tab froze for its refund after the
        capture (:mod:`server.catalog_refunds`; idempotent: a set member)."""
        member = f"{view.room}/{view.customer}/{view.purchase_id}"
        with translated():
            await self.meter.store.client.zadd(
                keys.purchase_refunds_due(), {member: self.meter.clock.now_ms()}, nx=True
            )

    async def fulfil(self, room: str, customer: str, purchase_id: str) -> ResolveResult:
        """The model of ``room`` marks a request done. Codes: purchase_not_found (also for a
        purchase of another room), then those of :meth:`metering.meter.Meter.fulfil`."""
        view = await self.meter.purchases.read(customer, purchase_id)
        if view is None or view.room != room:
            return ResolveResult(code=Code.PURCHASE_NOT_FOUND, purchase_id=purchase_id)
        result = await self.meter.fulfil(customer, purchase_id)
        await self._resolved(view, result, voided=False)
        return result

    async def decline(self, room: str, customer: str, purchase_id: str) -> ResolveResult:
        """The model of ``room`` declines a request: voided before settlement (the viewer pays
        nothing), or — the tab frozen already — ``tab_not_open``: it is refunded after the
        capture, by itself (:mod:`server.catalog_refunds`, docs/purchases.md). Codes:
        purchase_not_found, then those of :meth:`metering.meter.Meter.void`."""
        view = await self.meter.purchases.read(customer, purchase_id)
        if view is None or view.room != room:
            return ResolveResult(code=Code.PURCHASE_NOT_FOUND, purchase_id=purchase_id)
        result = await self.meter.void(customer, purchase_id, PurchaseEvent.DECLINE)
        await self._resolved(view, result, voided=True)
        return result

    async def expire_due(self, now_ms: int) -> list[ResolveResult]:
        """Expire every request past its deadline (at most :data:`EXPIRE_BATCH_MAX`): voided
        while its tab is open. One whose tab froze first (``tab_not_open``) leaves the due list
        for the list of refunds owed (:mod:`server.catalog_refunds`)."""
        client = self.meter.store.client
        with translated():
            due = await client.zrangebyscore(
                keys.requests_due(), "-inf", now_ms, start=0, num=EXPIRE_BATCH_MAX
            )
        results = []
        for member in due:
            _, customer, purchase_id = as_text(member).split("/")
            view = await self.meter.purchases.read(customer, purchase_id)
            if view is None:
                with translated():
                    await client.zrem(keys.requests_due(), as_text(member))
                continue
            result = await self.meter.void(customer, purchase_id, PurchaseEvent.EXPIRE)
            if result.code is Code.PURCHASE_NOT_PENDING:
                result = ResolveResult(
                    code=Code.DUPLICATE, purchase_id=purchase_id, state=view.state
                )
            await self._resolved(view, result, voided=True)
            results.append(result)
        return results

    # -- entitlements ----------------------------------------------------------------------

    async def entitlements(self, customer: str, now_ms: int) -> dict[str, int]:
        """``customer``'s running unlocks: ``room/item`` → entitled until (ms)."""
        with translated():
            raw = await self.meter.store.client.hgetall(keys.entitlements(customer))
        running = {as_text(k): as_int(v) for k, v in raw.items()}
        return {what: until for what, until in sorted(running.items()) if until > now_ms}

    async def entitled(self, customer: str, room: str, what: str, now_ms: int) -> bool:
        """Whether ``customer`` holds unlock ``what`` (an item id) in ``room`` now."""
        with translated():
            raw = await self.meter.store.client.hget(keys.entitlements(customer), f"{room}/{what}")
        return raw is not None and as_int(raw) > now_ms
