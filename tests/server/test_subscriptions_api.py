"""The subscriptions HTTP API on a real server process, driven through the SDK's Backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from clients.errors import Refused
from clients.sdk import Backend, Client
from clients.tickets import Role
from metering import keys
from server.api_contract import ALLOWANCE_ENTRY
from server.embedded_redis import RedisServer
from tests.server.conftest import api, post_tab, settled_statement
from tests.support.processes import API_KEY, TipmeterProcess, ticket
from tests.support.waiting import eventually

SILVER = {
    "plan_id": "silver",
    "kind": "site",
    "level": "silver",
    "rank": 1,
    "prices": {"EUR": {"price_minor": 990}},
    "features": ["hd"],
}
GOLD = {
    **SILVER,
    "plan_id": "gold",
    "level": "gold",
    "rank": 2,
    "prices": {"EUR": {"price_minor": 1990}},
}


@pytest.fixture(scope="module")
def server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TipmeterProcess]:
    """One server process with its own ledger database and the in-process sandbox."""
    cwd: Path = tmp_path_factory.mktemp("subs-api")
    process = TipmeterProcess(["serve"], {"TIPMETER_REDIS_URL": redis_server.url}, cwd=cwd).start()
    try:
        yield process
    finally:
        process.stop()


async def _signup(
    backend: Backend, customer: str, card: str, key: str, plan: str = "silver"
) -> dict[str, Any]:
    return await backend.subscribe(
        customer,
        plan,
        "EUR",
        card,
        country="DE",
        country_evidence="billing_address",
        idempotency_key=key,
        email=f"{customer}@example.com",
        language="de",
    )


async def test_sign_up_renew_change_cancel_and_read_invoices(server: TipmeterProcess) -> None:
    backend = Backend(server.base_url, API_KEY)
    assert (await backend.create_plan(SILVER))["plan_id"] == "silver"
    assert (await backend.create_plan(SILVER))["plan_id"] == "silver"  # the same: answered
    await backend.create_plan(GOLD)
    with pytest.raises(Refused) as refused:
        await backend.create_plan({**SILVER, "rank": 5})
    assert refused.value.code == "plan_exists"

    sub = await _signup(backend, "alice", "tok_visa", "signup-alice")
    assert sub["state"] == "active"
    assert sub["features"] == ["hd"]
    assert [p["status"] for p in sub["periods"]] == ["paid"]
    again = await _signup(backend, "alice", "tok_visa", "signup-alice")
    assert again["subscription_id"] == sub["subscription_id"]
    with pytest.raises(Refused) as refused:
        await _signup(backend, "alice", "tok_visa", "signup-alice-2")
    assert refused.value.code == "already_subscribed"

    invoices = await backend.invoices(sub["subscription_id"])
    assert len(invoices) == 1
    assert (invoices[0]["total_minor"], invoices[0]["tax_minor"]) == (990, 158)
    assert invoices[0]["country"] == "DE"
    assert invoices[0]["country_evidence"] == "billing_address"

    changed = await backend.change_plan(sub["subscription_id"], "gold")
    assert changed["plan_id"] == "gold"
    assert changed["adjustment_minor"] > 0  # an upgrade: owed on the next invoice
    assert changed["history"][-1]["event"] == "change"

    cancelled = await backend.cancel(sub["subscription_id"], "period_end")
    assert cancelled["cancel_mode"] == "period_end"
    assert cancelled["next_charge_at_ms"] is None
    assert cancelled["state"] == "active"  # until the period's end

    async with api(server) as http:
        answer = await http.get(
            "/v1/exports/invoices",
            params={"since": "2000-01-01", "until": "2100-01-01", "format": "datev"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = [r.split(";") for r in answer.text.splitlines()[2:]]
    assert [r[0] for r in rows if r[7] == invoices[0]["invoice_id"]] == ["9,90"]

    with pytest.raises(Refused) as refused:
        await backend.subscription("sub_nothing")
    assert refused.value.code == "subscription_not_found"


async def test_a_declined_sign_up_is_past_due_until_a_new_card(server: TipmeterProcess) -> None:
    backend = Backend(server.base_url, API_KEY)
    await backend.create_plan(SILVER)
    sub = await _signup(backend, "bob", "tok_decline_insufficient_funds", "signup-bob")
    assert sub["state"] == "past_due"
    assert sub["features"] == ["hd"]  # past due keeps the features while it is dunned
    restored = await backend.update_card(sub["subscription_id"], "tok_visa", "2031-04")
    assert restored["state"] == "active"
    assert [p["status"] for p in restored["periods"]] == ["paid"]
    listed = await backend.customer_subscriptions("bob")
    assert [s["state"] for s in listed] == ["active"]


VIP = {
    **SILVER,
    "plan_id": "vip",
    "allowances": [
        {"kind": "private", "unit": "seconds", "granted": 60},
        {"kind": "tip", "unit": "bp", "granted": 1_000},
    ],
}


async def _reserve_of(redis_server: RedisServer, customer: str, tab_id: str) -> list[Any]:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        return await client.hmget(keys.tab(customer, tab_id), ["free:private", "dbp:tip"])
    finally:
        await client.aclose()


async def test_a_members_tabs_hold_the_allowance_and_the_answer_shows_what_is_left(
    server: TipmeterProcess, redis_server: RedisServer
) -> None:
    backend = Backend(server.base_url, API_KEY)
    await backend.create_plan(VIP)
    # A tab open before the sign-up gets the allowance when the membership begins.
    async with api(server) as http:
        before = await post_tab(http, "dave", currency="EUR")
        assert before.status_code == 201, before.text
    await _signup(backend, "dave", "tok_visa", "signup-dave", plan="vip")
    assert await _reserve_of(redis_server, "dave", before.json()["tab_id"]) == [b"60", b"1000"]

    sub = await _signup(backend, "carol", "tok_visa", "signup-carol", plan="vip")
    assert sub["allowance"] == [
        {"kind": "private", "unit": "seconds", "granted": 60, "used": 0, "left": 60},
        {"kind": "tip", "unit": "bp", "granted": 1_000, "used": 0, "left": 1_000},
    ]
    for entry in sub["allowance"]:
        assert set(entry) == set(ALLOWANCE_ENTRY["properties"]) == set(ALLOWANCE_ENTRY["required"])
    # A tab opened by a member holds the allowance: the meter spends it there.
    async with api(server) as http:
        opened = await post_tab(http, "carol", currency="EUR")
        assert opened.status_code == 201, opened.text
        again = await post_tab(http, "carol", currency="EUR")  # a retry reserves nothing more
        assert again.json()["tab_id"] == opened.json()["tab_id"]
    assert await _reserve_of(redis_server, "carol", opened.json()["tab_id"]) == [b"60", b"1000"]
    read = await backend.subscription(sub["subscription_id"])
    assert read["allowance"][0]["left"] == 60  # held for the tab, not used yet


async def test_pause_and_resume_through_the_sdk(server: TipmeterProcess) -> None:
    backend = Backend(server.base_url, API_KEY)
    await backend.create_plan(SILVER)
    sub = await _signup(backend, "pauline", "tok_visa", "signup-pauline")
    sid = sub["subscription_id"]
    paused = await backend.pause(sid)
    # The paid month is kept: the pause takes effect at its end, and no charge is announced.
    assert paused["state"] == "active"
    assert paused["pause_at_ms"] == sub["period"]["ends_at_ms"]
    assert paused["next_charge_at_ms"] is None
    resumed = await backend.resume(sid)
    assert (resumed["pause_at_ms"], resumed["next_charge_at_ms"]) == (
        None,
        sub["period"]["ends_at_ms"],
    )
    with pytest.raises(Refused) as refused:
        await backend.resume(sid)
    assert refused.value.code == "not_allowed"


async def test_a_post_pay_capture_is_invoiced_and_listed_with_its_country(
    server: TipmeterProcess,
) -> None:
    async with api(server) as http:
        opened = await http.post(
            "/v1/tabs",
            headers={"Idempotency-Key": "tab-carla"},
            json={
                "customer": "carla",
                "currency": "EUR",
                "cap_minor": 5_000,
                "payment_method": "tok_visa",
                "country": "it",
                "country_evidence": "card country",
                "email": "carla@example.com",
                "language": "it",
            },
        )
        assert opened.status_code == 201, opened.text
        tab_id = opened.json()["tab_id"]
        refused = await http.post(
            "/v1/tabs",
            headers={"Idempotency-Key": "tab-carla-2"},
            json={
                "customer": "carla2",
                "currency": "EUR",
                "cap_minor": 5_000,
                "payment_method": "tok_visa",
                "email": "not an address",
            },
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_field"
    async with Client(server.ws_url, ticket(Role.VIEWER, "carla", currency="EUR")) as viewer:
        assert (await viewer.tip("alice", 1_220, "EUR")).status == "applied"
    async with api(server) as http:
        queued = await http.post(f"/v1/customers/carla/tabs/{tab_id}/settle")
    assert queued.status_code == 202, queued.text
    statement = await settled_statement(server, "carla", tab_id)
    backend = Backend(server.base_url, API_KEY)
    found: list[dict[str, Any]] = []

    async def invoiced() -> bool:
        found[:] = await backend.customer_invoices("carla")
        return bool(found)

    await eventually(invoiced, what="the capture's invoice")
    [invoice] = found
    assert invoice["kind"] == "invoice"
    assert invoice["series"].startswith("P")
    assert invoice["capture_id"] == statement["capture_id"]
    assert (invoice["country"], invoice["country_evidence"]) == ("IT", "card country")
    # 22 % included in 12.20: 2.20 of tax, by the one rule.
    assert (invoice["net_minor"], invoice["tax_minor"], invoice["total_minor"]) == (1000, 220, 1220)
    assert invoice["lines"] == [
        {
            "line_no": 1,
            "description": "tips in room alice (1)",
            "net_minor": 1000,
            "tax_minor": 220,
            "total_minor": 1220,
            "tax_rate_bp": 2200,
        }
    ]
    assert await backend.invoice(invoice["invoice_id"]) == invoice
    with pytest.raises(Refused) as missing:
        await backend.invoice("P1999-0000001")
    assert missing.value.code == "invoice_not_found"


async def test_seats_and_add_ons_through_the_api(server: TipmeterProcess) -> None:
    backend = Backend(server.base_url, API_KEY)
    await backend.create_plan(
        {
            "plan_id": "team",
            "kind": "site",
            "tiers": {"mode": "volume", "unit": "seat"},
            "prices": {
                "EUR": {
                    "price_minor": 0,
                    "tiers": [
                        {"up_to": 10, "unit_minor": 500},
                        {"up_to": None, "unit_minor": 400},
                    ],
                }
            },
            "addons": [{"addon_id": "hd", "prices": {"EUR": 300}, "quantity_max": 2}],
        }
    )
    sub = await backend.subscribe(
        "dora",
        "team",
        "EUR",
        "tok_visa",
        country="DE",
        country_evidence="billing_address",
        idempotency_key="signup-dora",
        quantity=12,
        addons=[{"addon_id": "hd", "quantity": 1}],
    )
    assert (sub["quantity"], sub["addons"]) == (12, [{"addon_id": "hd", "quantity": 1}])
    assert sub["next_price_minor"] == 12 * 400 + 300
    [invoice] = await backend.invoices(sub["subscription_id"])
    assert invoice["total_minor"] == 12 * 400 + 300
    changed = await backend.change_items(sub["subscription_id"], 3)
    assert (changed["quantity"], changed["addons"], changed["next_price_minor"]) == (3, [], 1500)
    assert changed["adjustment_minor"] < 0  # a credit for the unused seats and add-on
    with pytest.raises(Refused) as refused:
        await backend.change_items(sub["subscription_id"], 3, [{"addon_id": "hd", "quantity": 3}])
    assert refused.value.code == "items_invalid"
    with pytest.raises(Refused) as refused:
        await backend.change_items(sub["subscription_id"], 0)
    assert refused.value.code == "invalid_field"
