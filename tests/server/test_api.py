"""The HTTP API of the cam-site backend, against a real server process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from clients.errors import Refused
from clients.protocol import RateView, RoomEvent
from clients.sdk import Client
from clients.tickets import Role
from metering.rooms import RoomEvent as RoomEventRecord
from server.feed import feed_event
from tests.server.conftest import api, next_of, open_tab, read_tab
from tests.support.processes import TipmeterProcess, ticket
from tests.support.waiting import eventually

Pair = tuple[TipmeterProcess, TipmeterProcess]


#: The fields of a feed event's ``user``, as Chaturbate's Events API names them.
FEED_USER_FIELDS = (
    "username",
    "inFanclub",
    "hasTokens",
    "isMod",
    "recentTips",
    "gender",
    "subgender",
)


def _open_body(
    customer: str = "c1", cap: object = 5_000, card: str = "tok_visa", currency: str = "USD"
) -> dict[str, object]:
    return {"customer": customer, "currency": currency, "cap_minor": cap, "payment_method": card}


async def test_opening_a_tab_is_idempotent_by_key(servers: Pair) -> None:
    a, b = servers
    async with api(a) as http_a, api(b) as http_b:
        first = await http_a.post("/v1/tabs", json=_open_body(), headers={"Idempotency-Key": "k1"})
        retry = await http_b.post("/v1/tabs", json=_open_body(), headers={"Idempotency-Key": "k1"})
        other = await http_a.post("/v1/tabs", json=_open_body(), headers={"Idempotency-Key": "k2"})
    assert first.status_code == 201
    body = first.json()
    assert (body["state"], body["cap_minor"], body["accrued_minor"], body["lines"]) == (
        "open",
        5_000,
        0,
        [],
    )
    assert retry.status_code == 200
    assert retry.json()["tab_id"] == body["tab_id"]
    assert other.status_code == 409
    assert other.json()["error"] == {
        "code": "tab_already_open",
        "message": "the customer has an open tab",
        "tab_id": body["tab_id"],
    }


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (_open_body(cap=50.0), {"Idempotency-Key": "x"}, 400, "invalid_amount"),
        (_open_body(cap="5000"), {"Idempotency-Key": "x"}, 400, "invalid_amount"),
        (_open_body(cap=True), {"Idempotency-Key": "x"}, 400, "invalid_amount"),
        (_open_body(cap=10**7), {"Idempotency-Key": "x"}, 400, "cap_out_of_range"),
        (_open_body(currency="XYZ"), {"Idempotency-Key": "x"}, 400, "invalid_currency"),
        (_open_body(customer="a b"), {"Idempotency-Key": "x"}, 400, "invalid_id"),
        (_open_body(), {}, 400, "idempotency_key_required"),
        (
            _open_body(card="tok_decline_insufficient_funds"),
            {"Idempotency-Key": "x"},
            402,
            "card_declined",
        ),
    ],
)
async def test_bad_requests_get_a_code(
    servers: Pair, body: dict[str, object], headers: dict[str, str], status: int, code: str
) -> None:
    a, _ = servers
    async with api(a) as http:
        response = await http.post("/v1/tabs", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_body_that_repeats_a_key_is_refused(servers: Pair) -> None:
    a, _ = servers
    raw = (
        '{"customer":"dup","currency":"USD","cap_minor":100,"cap_minor":1000000,'
        '"payment_method":"tok_visa"}'
    )
    async with api(a) as http:
        response = await http.post(
            "/v1/tabs",
            content=raw,
            headers={"Idempotency-Key": "dup-1", "Content-Type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "duplicate_key"


async def test_a_declined_card_says_why(servers: Pair) -> None:
    a, _ = servers
    async with api(a) as http:
        response = await http.post(
            "/v1/tabs",
            json=_open_body(card="tok_decline_stolen_card"),
            headers={"Idempotency-Key": "s"},
        )
    assert response.json()["error"]["decline_reason"] == "stolen_card"


async def test_the_api_key_is_required(servers: Pair) -> None:
    a, _ = servers
    async with httpx.AsyncClient(base_url=a.base_url) as http:
        missing = await http.post("/v1/tabs", json=_open_body())
        wrong = await http.post(
            "/v1/tabs", json=_open_body(), headers={"Authorization": "Bearer nope"}
        )
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"


async def test_raise_cap_through_the_gateway(servers: Pair) -> None:
    a, _ = servers
    tab = await open_tab(a, "c2", cap_minor=1_000)
    path = f"/v1/customers/c2/tabs/{tab['tab_id']}/cap"
    async with api(a) as http:
        raised = await http.post(path, json={"cap_minor": 4_000})
        again = await http.post(path, json={"cap_minor": 4_000})
        lower = await http.post(path, json={"cap_minor": 2_000})
        float_cap = await http.post(path, json={"cap_minor": 5_000.5})
        missing = await http.post("/v1/customers/c2/tabs/tab_nope/cap", json={"cap_minor": 5_000})
    assert (raised.status_code, raised.json()["cap_minor"]) == (200, 4_000)
    assert (again.status_code, again.json()["cap_minor"]) == (200, 4_000)
    assert (lower.status_code, lower.json()["error"]["code"]) == (409, "cap_not_raised")
    assert (float_cap.status_code, float_cap.json()["error"]["code"]) == (400, "invalid_amount")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "tab_not_found")


async def test_a_cap_out_of_range_says_the_range(servers: Pair) -> None:
    a, _ = servers
    tab = await open_tab(a, "c2r", cap_minor=1_000)
    async with api(a) as http:
        zero = await http.post(f"/v1/customers/c2r/tabs/{tab['tab_id']}/cap", json={"cap_minor": 0})
    assert zero.status_code == 400
    assert zero.json()["error"] == {
        "code": "cap_out_of_range",
        "message": "cap_minor must be within 100..1000000",
    }


async def test_an_unhandled_error_answers_the_json_error_shape() -> None:
    """Whatever raises in a route, the answer is the documented JSON error, not plain text."""
    from starlette.requests import Request
    from starlette.responses import Response

    from server.app import create_app
    from server.config import Settings

    app = create_app(Settings(ticket_secrets=("s" * 32,), api_keys=("k" * 32,)))

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    app.add_route("/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal error; retry"}
    }


async def test_a_declined_increment_keeps_the_old_cap(servers: Pair) -> None:
    a, _ = servers
    tab = await open_tab(a, "c3", cap_minor=1_000, card="tok_increment_decline")
    async with api(a) as http:
        raised = await http.post(
            f"/v1/customers/c3/tabs/{tab['tab_id']}/cap", json={"cap_minor": 2_000}
        )
        read = await http.get(f"/v1/customers/c3/tabs/{tab['tab_id']}")
    assert (raised.status_code, raised.json()["error"]["decline_reason"]) == (
        402,
        "insufficient_funds",
    )
    assert read.json()["cap_minor"] == 1_000


async def test_settle_now_is_accepted_and_queued(servers: Pair) -> None:
    a, _ = servers
    tab = await open_tab(a, "c4")
    async with api(a) as http:
        settled = await http.post(f"/v1/customers/c4/tabs/{tab['tab_id']}/settle")
        again = await http.post(f"/v1/customers/c4/tabs/{tab['tab_id']}/settle")
    assert settled.status_code == again.status_code == 202
    assert (settled.json()["state"], settled.json()["freeze_reason"]) == ("settling", "merchant")


async def test_read_a_tab_with_its_lines(servers: Pair) -> None:
    a, _ = servers
    tab = await open_tab(a, "c5")
    async with Client(a.ws_url, ticket(Role.VIEWER, "c5", currency="USD")) as viewer:
        await viewer.tip("alice", 120, "USD", tip_id="line-1")
    async with api(a) as http:
        read = (await http.get(f"/v1/customers/c5/tabs/{tab['tab_id']}")).json()
    assert read["accrued_minor"] == 120
    assert read["lines"] == [
        {
            "kind": "tip",
            "line_id": "tip:line-1",
            "seq": 1,
            "at_ms": read["lines"][0]["at_ms"],
            "room": "alice",
            "amount_minor": 120,
            "payout_bp": 6_000,
            "share_minor": 72,
        }
    ]


async def test_tickets_from_the_api_open_a_connection_once(servers: Pair) -> None:
    a, _ = servers
    async with api(a) as http:
        minted = await http.post(
            "/v1/tickets", json={"role": "model", "subject": "alice", "ttl_s": 30}
        )
        bad = await http.post("/v1/tickets", json={"role": "viewer", "subject": "bob"})
        too_long = await http.post(
            "/v1/tickets", json={"role": "model", "subject": "alice", "ttl_s": 10**6}
        )
    assert minted.status_code == 201
    body = minted.json()
    assert body["ws_url"] == a.ws_url
    assert body["expires_at_ms"] - time.time() * 1000 <= 30_000
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_currency")
    assert too_long.status_code == 400
    async with Client(body["ws_url"], body["ticket"]) as model:
        assert model.welcome is not None
        assert model.welcome.role == "model"


async def test_payout_rate_per_room(servers: Pair) -> None:
    a, _ = servers
    async with api(a) as http:
        response = await http.put("/v1/rooms/vip/payout", json={"payout_bp": 8_000})
        bad = await http.put("/v1/rooms/vip/payout", json={"payout_bp": 10_001})
    assert response.json() == {"room": "vip", "payout_bp": 8_000}
    assert bad.status_code == 400
    tab = await open_tab(a, "c6")
    async with Client(a.ws_url, ticket(Role.VIEWER, "c6", currency="USD")) as viewer:
        await viewer.tip("vip", 1_000, "USD", tip_id="p1")
    async with api(a) as http:
        read = (await http.get(f"/v1/customers/c6/tabs/{tab['tab_id']}")).json()
    assert read["lines"][0]["share_minor"] == 800


async def test_bodies_are_bounded(servers: Pair) -> None:
    a, _ = servers
    async with api(a) as http:
        response = await http.post(
            "/v1/tabs", content=b"{" + b" " * 20_000 + b"}", headers={"Idempotency-Key": "big"}
        )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")


async def test_the_openapi_document_describes_every_route(servers: Pair) -> None:
    from starlette.routing import Route

    from server.app import create_app
    from server.config import Settings

    a, _ = servers
    async with httpx.AsyncClient(base_url=a.base_url) as http:
        document = (await http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    settings = Settings(
        ticket_secrets=("x" * 32,), api_keys=("y" * 32,), redis_url="redis://unused"
    )
    # Every HTTP route is described, but those left out on purpose: health and metrics (for
    # operators), the pages and their files, the pages' demo backend (off in production), and
    # the pay-link pages (HTML for customers, docs/collection.md), and the operator console (its
    # own login and session, for the cam site's staff: docs/console.md).
    not_the_api = {"/livez", "/readyz", "/metrics", "/", "/js/tipmeter.js"}
    api_paths = {
        route.path
        for route in create_app(settings).routes
        if isinstance(route, Route)
        and route.path not in not_the_api
        and not route.path.startswith("/demo/")
        and not route.path.startswith("/pay/")
        and route.path != "/console"
        and not route.path.startswith("/console/")
    }
    assert api_paths == set(document["paths"])
    assert {"/v1/tabs", "/events/{room}/{token}/", "/overlay/ticket"} <= api_paths
    overlay = document["paths"]["/overlay/ticket"]["post"]
    assert overlay["security"] == []
    assert overlay["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "room",
        "token",
    ]
    assert {"201", "401"} <= set(overlay["responses"])


async def test_the_feed_speaks_the_chaturbate_events_shape(servers: Pair) -> None:
    a, b = servers
    async with api(a) as http:
        token = (await http.post("/v1/rooms/alice/feed-token")).json()
    assert token["feed_url"] == f"{a.base_url}/events/alice/{token['token']}/"
    await open_tab(a, "c7")
    async with Client(a.ws_url, ticket(Role.VIEWER, "c7", currency="USD", name="Bob")) as viewer:
        await viewer.tip("alice", 25, "USD", message="nice", tip_id="feed-1")
        await viewer.tip("alice", 30, "USD", anonymous=True, tip_id="feed-2")
        async with httpx.AsyncClient() as http:
            first = (
                await http.get(
                    token["feed_url"].replace(a.base_url, b.base_url) + "?i=0-0&timeout=0"
                )
            ).json()
            assert [e["object"]["tip"] for e in first["events"]] == [
                {"tokens": 25, "isAnon": False, "message": "nice", "tipId": "feed-1"},
                {"tokens": 30, "isAnon": True, "message": "", "tipId": "feed-2"},
            ]
            event = first["events"][0]
            assert event["method"] == "tip"
            assert event["object"]["broadcaster"] == "alice"
            user = event["object"]["user"]
            assert sorted(user) == sorted(FEED_USER_FIELDS)
            assert (user["username"], user["hasTokens"], user["isMod"]) == ("Bob", True, False)
            assert (user["inFanclub"], user["recentTips"], user["gender"]) == (False, "none", "")
            assert first["events"][1]["object"]["user"]["username"] == "anonymous"
            next_url = first["nextUrl"]
            assert next_url.startswith(f"{b.base_url}/events/alice/{token['token']}/?i=")
            # A long poll waits for the next tip, then resumes exactly after it.
            waiting = asyncio.create_task(
                http.get(next_url.replace("timeout=0", "timeout=10"), timeout=15)
            )
            await asyncio.sleep(0.3)  # an observation window: the poll must still be waiting
            assert not waiting.done()
            await viewer.tip("alice", 40, "USD")
            woke = (await asyncio.wait_for(waiting, 5)).json()
            assert [e["object"]["tip"]["tokens"] for e in woke["events"]] == [40]
            empty = (await http.get(woke["nextUrl"].replace("timeout=10", "timeout=0"))).json()
            assert empty["events"] == []
            bad = await http.get(f"{a.base_url}/events/alice/wrong-token/")
            assert (bad.status_code, bad.json()["error"]["code"]) == (401, "invalid_token")


@pytest.mark.parametrize(
    "query",
    [
        "timeout=%C2%B2",
        "timeout=99999999999999999999",
        "i=99999999999999999999-0",
        "i=18446744073709551615-0",
        "i=0-18446744073709551616",
    ],
)
async def test_odd_feed_queries_get_a_code_not_a_crash(servers: Pair, query: str) -> None:
    a, _ = servers
    async with api(a) as http:
        token = (await http.post("/v1/rooms/odd-feed/feed-token")).json()
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{token['feed_url']}?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_field"


async def test_a_cursor_past_the_last_possible_event_is_refused_on_subscribe(
    servers: Pair,
) -> None:
    a, _ = servers
    async with Client(a.ws_url, ticket(Role.BROADCAST, "odd-cursor")) as tool:
        with pytest.raises(Refused) as refused:
            await asyncio.wait_for(
                tool.subscribe("odd-cursor", after="18446744073709551615-18446744073709551615"), 10
            )
    assert refused.value.code == "invalid_field"


async def test_a_model_console_gets_earnings_in_its_welcome(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "c8")
    async with Client(a.ws_url, ticket(Role.VIEWER, "c8", currency="USD")) as viewer:
        await viewer.tip("alice", 1_000, "USD")
        async with Client(b.ws_url, ticket(Role.MODEL, "alice")) as model:
            await model.subscribe("alice", after="0-0")
            await next_of(model, RoomEvent)
    async with Client(b.ws_url, ticket(Role.MODEL, "alice")) as model:
        assert model.welcome is not None
        assert model.welcome.earnings == {"USD": 600}


async def test_the_statement_itemizes_by_model_and_adds_up(servers: Pair) -> None:
    a, b = servers
    tab = await open_tab(a, "c9", cap_minor=10_000)
    async with Client(b.ws_url, ticket(Role.MODEL, "bella")) as bella:
        await bella.set_rates({"private": RateView(6_000)})
        async with Client(a.ws_url, ticket(Role.VIEWER, "c9", currency="USD")) as viewer:
            await viewer.tip("alice", 125, "USD")
            await viewer.tip("bella", 300, "USD")
            await viewer.start_session("bella", "private", session_id="show-st")

            async def billed_two_seconds() -> bool:
                lines = (await read_tab(a, "c9", tab["tab_id"]))["lines"]
                return any(line["kind"] == "session" and line["seconds"] >= 2 for line in lines)

            await eventually(billed_two_seconds)
            await viewer.stop_session("show-st")
    async with api(a) as http:
        statement = (await http.get(f"/v1/customers/c9/tabs/{tab['tab_id']}/statement")).json()
    by_model = {row["room"]: row for row in statement["by_model"]}
    assert by_model["alice"]["tips_minor"] == 125
    assert by_model["bella"]["tips_minor"] == 300
    assert by_model["bella"]["sessions_minor"] == 100 * by_model["bella"]["session_seconds"]
    assert statement["total_minor"] == sum(line["amount_minor"] for line in statement["lines"])
    assert statement["total_minor"] == sum(row["total_minor"] for row in statement["by_model"])
    assert statement["platform_minor"] == statement["total_minor"] - sum(
        row["share_minor"] for row in statement["by_model"]
    )


def test_metrics_answer_only_the_networks_allowed(tmp_path: Path, redis_url: str) -> None:
    env = {"TIPMETER_REDIS_URL": redis_url, "TIPMETER_METRICS_CLIENTS": "10.0.0.0/8"}
    closed = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    try:
        refused = httpx.get(f"{closed.base_url}/metrics", timeout=5)
    finally:
        closed.stop()
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "metrics_not_allowed"
    assert "tipmeter_" not in refused.text


@pytest.mark.parametrize(("amount", "tokens"), [(1, None), (99, None), (100, 1), (250, 2)])
def test_a_tip_worth_less_than_a_token_is_left_out_of_the_feed(
    amount: int, tokens: int | None
) -> None:
    event = RoomEventRecord("1-0", "tip", {"amount": amount, "name": "Bob", "message": ""})
    shaped = feed_event("alice", event, minor_per_token=100)
    if tokens is None:
        assert shaped is None
    else:
        assert shaped is not None
        assert shaped["object"]["tip"]["tokens"] == tokens
