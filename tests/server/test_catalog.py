"""The catalog, the request queue and entitlements against a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from metering import keys
from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Code
from metering.purchase_lifecycle import ItemKind, PurchaseState
from server.catalog import (
    ITEMS_PER_ROOM_MAX,
    CatalogInvalid,
    Shop,
    ShopCode,
    parse_item,
    parse_site_unlocks,
)
from tests.metering.helpers import open_tab

HD = '[{"item_id": "hd", "name": "HD for this show", "prices": {"USD": 200}, "duration_s": 60}]'


def _item(meter: Meter, item_id: str = "dance", **fields: Any) -> Any:
    raw: dict[str, Any] = {"name": "Dance", "kind": "request", "prices": {"USD": 300}}
    raw.update(fields)
    return parse_item(item_id, raw, meter.limits)


@pytest.fixture
def shop(meter: Meter) -> Shop:
    return Shop(meter, site_unlocks=parse_site_unlocks(HD, meter.limits), request_ttl_s=60)


@pytest.mark.parametrize(
    ("item_id", "raw", "code"),
    [
        ("bad id", {"name": "x", "kind": "request", "prices": {"USD": 1}}, "invalid_id"),
        ("site.x", {"name": "x", "kind": "request", "prices": {"USD": 1}}, "invalid_id"),
        ("a", {"name": "", "kind": "request", "prices": {"USD": 1}}, "invalid_field"),
        ("a", {"name": "x", "kind": "gift", "prices": {"USD": 1}}, "invalid_kind"),
        ("a", {"name": "x", "kind": "request", "prices": {}}, "invalid_field"),
        ("a", {"name": "x", "kind": "request", "prices": {"usd": 1}}, "invalid_currency"),
        ("a", {"name": "x", "kind": "request", "prices": {"USD": 1.5}}, "invalid_amount"),
        ("a", {"name": "x", "kind": "request", "prices": {"USD": True}}, "invalid_amount"),
        ("a", {"name": "x", "kind": "request", "prices": {"USD": 10**9}}, "amount_out_of_range"),
        ("a", {"name": "x", "kind": "unlock", "prices": {"USD": 1}}, "invalid_field"),
        ("a", {"name": "x", "kind": "request", "prices": {"USD": 1}, "active": 1}, "invalid_field"),
        (
            "a",
            {"name": "x", "kind": "request", "prices": {"USD": 1}, "limit_per_viewer": 0},
            "invalid_field",
        ),
        ("a", {"name": "x", "kind": "request", "prices": {"USD": 1}, "color": 1}, "invalid_field"),
    ],
)
def test_an_item_is_validated(meter: Meter, item_id: str, raw: Any, code: str) -> None:
    with pytest.raises(CatalogInvalid) as caught:
        parse_item(item_id, raw, meter.limits)
    assert caught.value.code == code


def test_site_unlocks_are_read_from_the_setting(meter: Meter) -> None:
    [hd] = parse_site_unlocks(HD, meter.limits)
    assert (hd.item_id, hd.kind, hd.site, hd.duration_s) == ("site.hd", ItemKind.UNLOCK, True, 60)
    assert parse_site_unlocks("", meter.limits) == ()
    for bad in ("{}", "[1]", '[{"item_id": "x", "name": "x", "prices": {"USD": 1}}]'):
        with pytest.raises(ValueError, match=r"\S"):
            parse_site_unlocks(bad, meter.limits)


async def test_the_catalog_is_bounded(meter: Meter, shop: Shop) -> None:
    for n in range(ITEMS_PER_ROOM_MAX):
        assert await shop.put("room1", _item(meter, f"i{n}"))
    assert not await shop.put("room1", _item(meter, "one-more"))
    assert await shop.put("room1", _item(meter, "i0", name="Renamed"))  # replacing fits
    assert len(await shop.items("room1")) == ITEMS_PER_ROOM_MAX
    assert await shop.remove("room1", "i1")
    assert not await shop.remove("room1", "i1")


async def test_a_request_is_queued_declined_or_fulfilled(
    meter: Meter, shop: Shop, clock: FakeClock
) -> None:
    await shop.put("room1", _item(meter))
    ref = await open_tab(meter, cap_minor=1_000)
    buys = [
        await shop.buy(ref, currency="USD", room="room1", item_id="dance", purchase_id=p)
        for p in ("p1", "p2", "p3")
    ]
    assert [b.code for b in buys] == [Code.APPLIED] * 3
    assert [v.purchase_id for v in await shop.queue("room1")] == ["p1", "p2", "p3"]
    declined = await shop.decline("room1", "c1", "p1")
    assert (declined.code, declined.balance.accrued_minor) == (Code.APPLIED, 600)
    done = await shop.fulfil("room1", "c1", "p2")
    assert done.code is Code.APPLIED
    assert (await shop.fulfil("room2", "c1", "p3")).code is Code.PURCHASE_NOT_FOUND
    assert [v.purchase_id for v in await shop.queue("room1")] == ["p3"]
    # p3 is not done in time: the sweep voids it; the viewer pays for p2 only.
    assert await shop.expire_due(clock.now_ms()) == []
    clock.advance(60_000)
    [expired] = await shop.expire_due(clock.now_ms())
    assert (expired.code, expired.state) == (Code.APPLIED, PurchaseState.VOIDED)
    assert await shop.queue("room1") == []
    assert await shop.expire_due(clock.now_ms()) == []
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 300


async def test_a_request_declined_after_the_freeze_is_owed_a_refund(
    meter: Meter, shop: Shop
) -> None:
    await shop.put("room1", _item(meter))
    ref = await open_tab(meter)
    await shop.buy(ref, currency="USD", room="room1", item_id="dance", purchase_id="p1")
    await meter.tabs.freeze(ref, FreezeReason.MERCHANT)
    refused = await shop.decline("room1", "c1", "p1")
    assert refused.code is Code.TAB_NOT_OPEN
    # Out of her queue and of the expiry sweep: listed for its refund after the capture.
    assert await shop.queue("room1") == []
    assert await _owed(meter) == ["room1/c1/p1"]
    assert await meter.store.client.zcard(keys.requests_due()) == 0


async def test_an_expiry_after_the_freeze_is_owed_a_refund(
    meter: Meter, shop: Shop, clock: FakeClock
) -> None:
    await shop.put("room1", _item(meter))
    ref = await open_tab(meter)
    await shop.buy(ref, currency="USD", room="room1", item_id="dance", purchase_id="p1")
    await meter.tabs.freeze(ref, FreezeReason.MERCHANT)
    clock.advance(60_000)
    [waiting] = await shop.expire_due(clock.now_ms())
    assert waiting.code is Code.TAB_NOT_OPEN
    # It takes no place in later sweeps' batches: it waits in the list of refunds owed.
    assert await shop.expire_due(clock.now_ms()) == []
    assert await _owed(meter) == ["room1/c1/p1"]


async def _owed(meter: Meter) -> list[str]:
    members = await meter.store.client.zrange(keys.purchase_refunds_due(), 0, -1)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


async def test_catalog_refusals_and_limits(meter: Meter, shop: Shop) -> None:
    await shop.put("room1", _item(meter, limit_per_viewer=1))
    await shop.put("room1", _item(meter, "song", name="Song", limit_per_show=1))
    await shop.put("room1", _item(meter, "off", name="Off", active=False))
    ref = await open_tab(meter)
    other = await open_tab(meter, customer="c2")

    async def buy(item_id: str, purchase_id: str, tab: Any = ref, currency: str = "USD") -> Any:
        outcome = await shop.buy(
            tab, currency=currency, room="room1", item_id=item_id, purchase_id=purchase_id
        )
        return outcome.code

    assert await buy("nope", "x1") is ShopCode.ITEM_NOT_FOUND
    assert await buy("off", "x1") is ShopCode.ITEM_INACTIVE
    assert await buy("dance", "x1", currency="EUR") is ShopCode.PRICE_MISSING
    assert await buy("dance", "d1") is Code.APPLIED
    assert await buy("dance", "d1") is Code.DUPLICATE  # a retry is not counted twice
    assert await buy("dance", "d2") is ShopCode.LIMIT_REACHED
    assert await buy("dance", "d3", tab=other) is Code.APPLIED  # per viewer
    assert await buy("song", "s1") is Code.APPLIED
    assert await buy("song", "s2", tab=other) is ShopCode.LIMIT_REACHED  # per show
    await shop.new_show("room1")
    assert await buy("song", "s2", tab=other) is Code.APPLIED
    # A declined request gives its place back.
    assert (await shop.decline("room1", "c1", "d1")).code is Code.APPLIED
    assert await buy("dance", "d4") is Code.APPLIED


async def test_an_unlock_grants_an_entitlement(meter: Meter, shop: Shop, clock: FakeClock) -> None:
    ref = await open_tab(meter)
    outcome = await shop.buy(ref, currency="USD", room="room1", item_id="site.hd", purchase_id="u1")
    assert outcome.code is Code.APPLIED
    now = clock.now_ms()
    assert await shop.entitlements("c1", now) == {"room1/site.hd": now + 60_000}
    assert await shop.entitled("c1", "room1", "site.hd", now)
    assert not await shop.entitled("c1", "room2", "site.hd", now)
    clock.advance(60_000)
    assert not await shop.entitled("c1", "room1", "site.hd", clock.now_ms())
    assert await shop.entitlements("c1", clock.now_ms()) == {}
