"""Purchases over WebSocket against a real server process: buy, fulfil, decline, the pushes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clients.errors import Refused
from clients.protocol import RoomEvent, TabUpdate
from clients.sdk import Client
from clients.tickets import Role
from metering.rooms import RoomEvent as RoomEventRecord
from server.embedded_redis import RedisServer
from server.feed import feed_event
from tests.server.conftest import api, next_of, open_tab
from tests.support.processes import TipmeterProcess, ticket
from tests.support.waiting import eventually

UNLOCKS = '[{"item_id": "hd", "name": "HD", "prices": {"USD": 200}, "duration_s": 3600}]'


@pytest.fixture(scope="module")
def server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TipmeterProcess]:
    env = {"TIPMETER_REDIS_URL": redis_server.url, "TIPMETER_SITE_UNLOCKS": UNLOCKS}
    process = TipmeterProcess(["serve"], env, cwd=tmp_path_factory.mktemp("buy")).start()
    try:
        yield process
    finally:
        process.stop()


async def test_a_model_sells_from_her_menu(server: TipmeterProcess, redis_url: str) -> None:
    dance = {"name": "Dance", "kind": "request", "prices": {"USD": 300}, "duration_s": 600}
    async with api(server) as http:
        assert (await http.put("/v1/rooms/alice/catalog/dance", json=dance)).status_code == 200
    tab = await open_tab(server, "bob", cap_minor=1_000)
    async with (
        Client(server.ws_url, ticket(Role.MODEL, "alice")) as model,
        Client(server.ws_url, ticket(Role.VIEWER, "bob", currency="USD", name="Bob")) as viewer,
    ):
        await model.subscribe("alice")
        await viewer.subscribe("alice")
        first = await viewer.buy("alice", "dance", message="slow", purchase_id="p1")
        assert first.status == "applied"
        assert first.purchase is not None
        assert (first.purchase.state, first.purchase.amount_minor) == ("pending", 300)
        assert first.tab is not None
        assert first.tab.remaining_minor == 700
        again = await viewer.buy("alice", "dance", message="slow", purchase_id="p1")
        assert again.status == "duplicate"
        await viewer.buy("alice", "dance", purchase_id="p2")
        unlock = await viewer.buy("alice", "site.hd", purchase_id="u1")
        assert unlock.purchase is not None
        assert unlock.purchase.state == "granted"
        with pytest.raises(Refused) as refused:
            await viewer.buy("alice", "dance", purchase_id="p3")
        assert refused.value.code == "over_cap"
        with pytest.raises(Refused) as unknown:
            await viewer.buy("alice", "nope", purchase_id="p4")
        assert unknown.value.code == "item_not_found"

        bought = await next_of(model, RoomEvent, where=lambda e: e.event == "purchase")
        assert (bought.data["item_name"], bought.data["purchase_id"]) == ("Dance", "p1")

        declined = await model.decline("p1")
        assert declined.status == "applied"
        with pytest.raises(Refused) as late:
            await model.fulfil("p1")
        assert late.value.code == "purchase_not_pending"
        assert (await model.fulfil("p2")).status == "applied"
        with pytest.raises(Refused) as not_hers:
            await viewer.decline("p2")
        assert not_hers.value.code == "not_allowed"

        # The viewer sees each state change live, and the void freed the cap (a tab push).
        events: dict[str, RoomEvent] = {}
        remaining: list[int] = []

        async def both_seen() -> bool:
            pushed = await viewer.next_message(0.5)
            if isinstance(pushed, RoomEvent) and pushed.event.startswith("purchase_"):
                events[pushed.event] = pushed
            if isinstance(pushed, TabUpdate):
                remaining.append(pushed.tab.remaining_minor)
            return len(events) == 2 and 500 in remaining

        await eventually(both_seen, what="the void's and the fulfilment's pushes")
        assert events["purchase_voided"].data["purchase_id"] == "p1"
        assert "share_minor" not in events["purchase_voided"].data
        assert events["purchase_fulfilled"].data["purchase_id"] == "p2"
        assert remaining[-1] == 500

    async with api(server) as http:
        statement = (await http.get(f"/v1/customers/bob/tabs/{tab['tab_id']}/statement")).json()
    assert statement["total_minor"] == 500
    assert [
        (line["line_id"], line["state"], line["amount_minor"])
        for line in statement["lines"]
        if line["kind"] == "purchase"
    ] == [("buy:p1", "voided", 0), ("buy:p2", "fulfilled", 300), ("buy:u1", "granted", 200)]

    # The Chaturbate-style feed shows each purchase as a tip naming the item, and nothing of
    # the fulfilment or the void (the model's tools showed the request when it was bought).
    async with api(server) as http:
        token = (await http.post("/v1/rooms/alice/feed-token")).json()
        feed = (await http.get(token["feed_url"] + "?i=0-0&timeout=0")).json()
    assert {e["method"] for e in feed["events"]} == {"tip"}
    assert [e["object"]["tip"] for e in feed["events"]] == [
        {"tokens": 300, "isAnon": False, "message": "Dance: slow", "tipId": "p1"},
        {"tokens": 300, "isAnon": False, "message": "Dance", "tipId": "p2"},
        {"tokens": 200, "isAnon": False, "message": "HD", "tipId": "u1"},
    ]
    assert feed["events"][0]["object"]["user"]["username"] == "Bob"


def test_the_feed_shows_a_purchase_as_a_tip_naming_the_item() -> None:
    data = {"amount": 300, "item_name": "Dance", "message": "slow", "purchase_id": "p1"}
    event = RoomEventRecord("1-0", "purchase", {**data, "name": "Bob", "anon": False})
    shaped = feed_event("alice", event, 10)
    assert shaped is not None
    assert shaped["method"] == "tip"
    assert shaped["object"]["tip"]["tokens"] == 30
    assert shaped["object"]["tip"]["message"] == "Dance: slow"
    assert shaped["object"]["tip"]["tipId"] == "p1"
    for other in ("purchase_voided", "purchase_fulfilled"):
        assert feed_event("alice", RoomEventRecord("2-0", other, data), 10) is None
