"""The demo backend and what the server serves to browsers, over real HTTP: the demo runs only
where it may, acts only on demo ids, runs the HTTP API's own operations, and stays within
its bounds; the overlay's ticket exchange needs the room's current feed token."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from clients.tickets import Claims, Role, verify
from server import demo_api, overlay
from server.api import tab_id_for
from server.config import Settings
from server.embedded_redis import RedisServer
from tests.pages.conftest import SETTLE_TIMEOUT_S, SETTLED_STATES, Pages, Site, unique
from tests.support.processes import TICKET_SECRET, TipmeterProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")


def claims_of(ticket: str) -> Claims:
    """The claims of a ticket this test's servers signed."""
    claims = verify(
        ticket, (TICKET_SECRET.encode(),), issuers=("tipmeter",), now_ms=time.time_ns() // 10**6
    )
    assert isinstance(claims, Claims), claims
    return claims


async def test_the_setting_decides_where_the_demo_runs() -> None:
    for value, embedded, expected in [
        ("auto", True, True),
        ("auto", False, False),
        ("on", False, True),
        ("on", True, True),
        ("off", True, False),
        ("off", False, False),
    ]:
        settings = Settings.from_env({"TIPMETER_DEMO_API": value})
        assert demo_api.enabled(settings, embedded=embedded) is expected, (value, embedded)


async def test_with_a_configured_redis_the_demo_is_off_but_the_pages_are_served(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = TipmeterProcess(["serve"], {"TIPMETER_REDIS_URL": redis_server.url}, cwd=tmp_path)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            config = await http.get("/demo/config")
            assert config.status_code == 404
            assert config.json()["error"]["code"] == "demo_disabled"
            ticket = await http.post("/demo/tickets", json={"role": "model", "subject": "demo-x"})
            assert ticket.status_code == 404
            home = await http.get("/")
            assert (home.status_code, home.headers["location"]) == (307, "/pages/")
            for path, kind in [
                ("/pages/", "text/html"),
                ("/pages/viewer.html", "text/html"),
                ("/pages/overlay.js", "text/javascript"),
                ("/js/tipmeter.js", "text/javascript"),
                ("/js/vendor/msgpack/index.mjs", "text/javascript"),
            ]:
                response = await http.get(path)
                assert response.status_code == 200, path
                assert response.headers["content-type"].startswith(kind), path
    finally:
        server.stop()


async def test_the_embedded_default_runs_the_demo_and_names_the_pages(tmp_path: Path) -> None:
    server = TipmeterProcess(["serve"], {"TIPMETER_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            config = (await http.get("/demo/config")).json()
        assert (config["customer"], config["room"], config["currency"]) == (
            "demo-viewer",
            "demo-model",
            "USD",
        )
        assert {"token": "tok_visa", "label": "Visa: approves everything"} in config["cards"]
        output = server.output()
        assert f"{server.base_url}/pages/viewer.html" in output
        assert f"{server.base_url}/pages/overlay.html#room=demo-model&token=" in output
    finally:
        server.stop()


async def test_the_demo_acts_on_demo_ids_only(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.base, timeout=10) as http:
        refused = [
            await http.post("/demo/tickets", json={"role": "viewer", "subject": "c42"}),
            await http.post(
                "/demo/tabs",
                json={"customer": "c42", "cap_minor": 500, "payment_method": "tok_visa"},
                headers={"Idempotency-Key": "k1"},
            ),
            await http.get("/demo/customers/c42/tabs/tab_x/statement"),
            await http.post("/demo/customers/c42/tabs/tab_x/settle"),
            await http.post("/demo/customers/c42/tabs/tab_x/cap", json={"cap_minor": 900}),
            await http.post("/demo/rooms/alice/feed-token"),
            await http.get("/demo/rooms/alice/catalog"),
            await http.put("/demo/rooms/alice/catalog/dance", json={"name": "Dance"}),
            await http.delete("/demo/rooms/alice/catalog/dance"),
            await http.get("/demo/rooms/alice/requests"),
        ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [
        (403, "not_a_demo_id")
    ] * len(refused)


async def test_the_demo_edits_a_menu_as_the_catalog_api_does(site: Site) -> None:
    room = unique("room")
    dance = {"name": "Dance", "kind": "request", "prices": {"USD": 300}}
    async with httpx.AsyncClient(base_url=f"{site.base}/demo/rooms/{room}", timeout=10) as http:
        assert (await http.put("/catalog/dance", json=dance)).status_code == 200
        bad = await http.put("/catalog/dance", json={**dance, "prices": {"USD": 1.5}})
        huge = await http.put("/catalog/dance", json={**dance, "name": "x" * 4_000})
        catalog = (await http.get("/catalog")).json()
        queue = (await http.get("/requests")).json()
        removed = await http.delete("/catalog/dance")
        gone = await http.delete("/catalog/dance")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_amount")
    # The demo's own bound on bodies, below the API's.
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "body_too_large")
    assert [item["item_id"] for item in catalog["items"]] == ["dance"]
    assert [item["item_id"] for item in catalog["site_unlocks"]] == ["site.hd"]
    assert queue == {"room": room, "requests": []}
    assert removed.status_code == 200
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "item_not_found")
    async with site.api() as http:
        api_catalog = (await http.get(f"/v1/rooms/{room}/catalog")).json()
    assert api_catalog["items"] == []


async def test_the_demo_opens_tabs_through_the_http_api(site: Site) -> None:
    customer = unique("viewer")
    body = {"customer": customer, "cap_minor": 2_500, "payment_method": "tok_visa"}
    async with httpx.AsyncClient(base_url=site.base, timeout=10) as http:
        first = await http.post("/demo/tabs", json=body, headers={"Idempotency-Key": "order-1"})
        again = await http.post("/demo/tabs", json=body, headers={"Idempotency-Key": "order-1"})
        other = await http.post("/demo/tabs", json=body, headers={"Idempotency-Key": "order-2"})
        keyless = await http.post("/demo/tabs", json=body)
        huge = await http.post(
            "/demo/tabs", json={**body, "cap_minor": 10**9}, headers={"Idempotency-Key": "o-3"}
        )
        floaty = await http.post(
            "/demo/tabs", json={**body, "cap_minor": 2_500.0}, headers={"Idempotency-Key": "o-4"}
        )
        declined = await http.post(
            "/demo/tabs",
            json={**body, "customer": unique("viewer"), "payment_method": "tok_decline_lost_card"},
            headers={"Idempotency-Key": "o-5"},
        )
        too_big = await http.post(
            "/demo/tabs",
            content=b'{"pad": "' + b"x" * demo_api.DEMO_BODY_BYTES_MAX + b'"}',
            headers={"Idempotency-Key": "o-6"},
        )
    # The same handler as POST /v1/tabs: the tab id comes from the customer and the key, and a
    # repeat of the request finds the same tab instead of placing a second hold.
    assert first.status_code == 201, first.text
    tab = first.json()
    assert tab["tab_id"] == tab_id_for(customer, "order-1")
    assert (again.status_code, again.json()["tab_id"]) == (200, tab["tab_id"])
    assert (other.status_code, other.json()["error"]["code"]) == (409, "tab_already_open")
    assert (keyless.status_code, keyless.json()["error"]["code"]) == (
        400,
        "idempotency_key_required",
    )
    assert huge.json()["error"]["code"] == "cap_out_of_range"
    assert floaty.json()["error"]["code"] == "invalid_amount"
    assert (declined.status_code, declined.json()["error"]["decline_reason"]) == (
        402,
        "lost_card",
    )
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "body_too_large")
    assert (await site.tab(customer, tab["tab_id"]))["cap_minor"] == 2_500


async def test_the_demo_raises_settles_and_reads_what_the_api_does(site: Site) -> None:
    customer = unique("viewer")
    async with httpx.AsyncClient(base_url=site.base, timeout=10) as http:
        opened = await http.post(
            "/demo/tabs",
            json={"customer": customer, "cap_minor": 1_000, "payment_method": "tok_visa"},
            headers={"Idempotency-Key": "open"},
        )
        path = f"/demo/customers/{customer}/tabs/{opened.json()['tab_id']}"
        raised = await http.post(f"{path}/cap", json={"cap_minor": 3_000})
        lowered = await http.post(f"{path}/cap", json={"cap_minor": 2_000})
        settled = await http.post(f"{path}/settle")
        # The server's settlement worker voids the hold (nothing was spent).

        async def done() -> bool:
            state = (await http.get(f"{path}/statement")).json()["state"]
            return state in SETTLED_STATES

        await eventually(done, timeout_s=SETTLE_TIMEOUT_S, what="the demo tab settles")
        statement = await http.get(f"{path}/statement")
        ticket = await http.post(
            "/demo/tickets", json={"role": "viewer", "subject": customer, "name": "Dee"}
        )
    assert (raised.status_code, raised.json()["cap_minor"]) == (200, 3_000)
    assert (lowered.status_code, lowered.json()["error"]["code"]) == (409, "cap_not_raised")
    assert (settled.status_code, settled.json()["state"]) == (202, "settling")
    # The same statement as the API's, with its outcome.
    assert statement.json() == await site.statement(customer, opened.json()["tab_id"])
    assert (statement.json()["state"], statement.json()["outcome"]) == ("voided", "voided")
    assert statement.json()["total_minor"] == 0
    claims = claims_of(ticket.json()["ticket"])
    assert (claims.role, claims.subject, claims.currency, claims.name) == (
        Role.VIEWER,
        customer,
        "USD",
        "Dee",
    )
    assert claims.expires_at_ms - claims.issued_at_ms == demo_api.DEMO_TICKET_TTL_S * 1000


async def test_an_overlay_trades_its_feed_token_for_a_broadcast_ticket(site: Site) -> None:
    room = unique("room")
    async with httpx.AsyncClient(base_url=site.base, timeout=10) as http:
        made = (await http.post(f"/demo/rooms/{room}/feed-token")).json()
        ticket = await http.post("/overlay/ticket", json={"room": room, "token": made["token"]})
        feed = await http.get(f"/events/{room}/{made['token']}/", params={"timeout": 0})
        wrong = await http.post("/overlay/ticket", json={"room": room, "token": "guess"})
        other_room = await http.post(
            "/overlay/ticket", json={"room": unique("room"), "token": made["token"]}
        )
        await http.post(f"/demo/rooms/{room}/feed-token")  # a new link turns this one off
        revoked = await http.post("/overlay/ticket", json={"room": room, "token": made["token"]})
    assert ticket.status_code == 201, ticket.text
    claims = claims_of(ticket.json()["ticket"])
    assert (claims.role, claims.subject) == (Role.BROADCAST, room)
    assert claims.expires_at_ms - claims.issued_at_ms == overlay.OVERLAY_TICKET_TTL_S * 1000
    assert feed.status_code == 200
    assert made["feed_url"].endswith(f"/events/{room}/{made['token']}/")
    for refused in (wrong, other_room, revoked):
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_token")


async def test_the_pages_say_when_the_demo_backend_is_off(
    redis_server: RedisServer, tmp_path: Path, pages: Pages
) -> None:
    server = TipmeterProcess(["serve"], {"TIPMETER_REDIS_URL": redis_server.url}, cwd=tmp_path)
    server.start()
    try:
        for page_name in ("viewer", "model"):
            page = await pages.open(
                f"{server.base_url}/pages/{page_name}.html",
                name=page_name,
                allow=(re.compile(r"status of 404"),),
            )
            await expect(page.locator("#fatal")).to_have_text(
                re.compile("demo backend is off on this server")
            )
    finally:
        server.stop()
