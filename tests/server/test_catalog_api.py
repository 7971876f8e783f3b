"""The catalog HTTP API against a real server process: edit, read, queue, entitlements."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator

import pytest

from metering.clock import SystemClock
from metering.meter import Meter, open_store
from metering.outcomes import TabRef
from metering.store import RedisTarget
from server.catalog import Shop, parse_site_unlocks
from server.embedded_redis import RedisServer
from tests.server.conftest import api, open_tab
from tests.support.processes import TipmeterProcess
from tests.support.waiting import eventually

UNLOCKS = '[{"item_id": "mod", "name": "Moderator", "prices": {"USD": 500}, "duration_s": 3600}]'


async def _voided(state: Awaitable[dict[str, object]]) -> bool:
    return (await state)["state"] == "voided"


@pytest.fixture(scope="module")
def server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TipmeterProcess]:
    env = {
        "TIPMETER_REDIS_URL": redis_server.url,
        "TIPMETER_SITE_UNLOCKS": UNLOCKS,
        "TIPMETER_REQUEST_TTL_S": "2",
    }
    process = TipmeterProcess(["serve"], env, cwd=tmp_path_factory.mktemp("catalog")).start()
    try:
        yield process
    finally:
        process.stop()


async def test_a_model_edits_her_menu_and_works_her_queue(
    server: TipmeterProcess, redis_url: str
) -> None:
    dance = {"name": "Dance", "kind": "request", "prices": {"USD": 300}, "duration_s": 600}
    async with api(server) as http:
        put = await http.put("/v1/rooms/room1/catalog/dance", json=dance)
        assert put.status_code == 200, put.text
        bad = await http.put("/v1/rooms/room1/catalog/x", json={**dance, "prices": {"USD": 1.5}})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_amount")
        song = {"name": "Song", "kind": "request", "prices": {"USD": 100}}  # the site's 2 s
        assert (await http.put("/v1/rooms/room1/catalog/song", json=song)).status_code == 200
        catalog = (await http.get("/v1/rooms/room1/catalog")).json()
        assert [i["item_id"] for i in catalog["items"]] == ["dance", "song"]
        assert [u["item_id"] for u in catalog["site_unlocks"]] == ["site.mod"]
        tab = await open_tab(server, "c1", cap_minor=2_000)

    # Buying goes over WebSocket; here the money core buys through the same shop directly.
    store = await open_store(RedisTarget(url=redis_url))
    meter = Meter(store, clock=SystemClock())
    shop = Shop(meter, site_unlocks=parse_site_unlocks(UNLOCKS, meter.limits), request_ttl_s=2)
    ref = TabRef("c1", tab["tab_id"])
    try:
        for item_id, purchase_id in (("dance", "p1"), ("dance", "p2"), ("song", "p3")):
            bought = await shop.buy(
                ref, currency="USD", room="room1", item_id=item_id, purchase_id=purchase_id
            )
            assert bought.code == "applied"
        unlock = await shop.buy(
            ref, currency="USD", room="room1", item_id="site.mod", purchase_id="u1"
        )
        assert unlock.code == "applied"
    finally:
        await meter.aclose()
        await store.close()

    async with api(server) as http:
        queue = (await http.get("/v1/rooms/room1/requests")).json()["requests"]
        assert {r["purchase_id"] for r in queue} == {"p1", "p2", "p3"}
        declined = await http.post("/v1/rooms/room1/requests/c1/p1/decline")
        assert (declined.status_code, declined.json()["state"]) == (200, "voided")
        done = await http.post("/v1/rooms/room1/requests/c1/p2/fulfil")
        assert (done.status_code, done.json()["state"]) == (200, "fulfilled")
        again = await http.post("/v1/rooms/room1/requests/c1/p1/fulfil")
        assert (again.status_code, again.json()["error"]["code"]) == (409, "purchase_not_pending")
        # p3 is not done within the site's 2 s: the server's sweep expires it.

        async def p3_state() -> dict[str, object]:
            return dict((await http.get("/v1/customers/c1/purchases/p3")).json())

        await eventually(lambda: _voided(p3_state()), what="the server's sweep expires p3")
        p3 = await p3_state()
        assert (p3["state"], p3["reason"]) == ("voided", "expire")
        statement = (await http.get(f"/v1/customers/c1/tabs/{tab['tab_id']}/statement")).json()
        assert statement["total_minor"] == 800  # p2 and the unlock; p1 and p3 cost nothing
        purchases = [line for line in statement["lines"] if line["kind"] == "purchase"]
        assert [(p["line_id"], p["state"], p["amount_minor"]) for p in purchases] == [
            ("buy:p1", "voided", 0),
            ("buy:p2", "fulfilled", 300),
            ("buy:p3", "voided", 0),
            ("buy:u1", "granted", 500),
        ]
        rights = (await http.get("/v1/customers/c1/entitlements")).json()["entitlements"]
        assert [(r["room"], r["item_id"]) for r in rights] == [("room1", "site.mod")]
        removed = await http.delete("/v1/rooms/room1/catalog/song")
        assert removed.status_code == 200
