"""Support actions from the console against a real server: each goes through the HTTP API (the
same policy and error codes the cam site gets), each is audited, and roles limit them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from clients.sdk import Client
from clients.tickets import Role
from tests.server.conftest import api, settled_statement
from tests.support.console import insert_operators, logged_in
from tests.support.processes import TipmeterProcess, serving, ticket
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

SUPPORT_KEY = "test-support-key-0123456789abcdef"
#: Longest wait for the ledger to hold a declined tab (the worker writes it just after Redis).
CASE_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    with serving(
        tmp_path_factory,
        "support",
        {"TIPMETER_WORKER": "on", "TIPMETER_SUPPORT_API_KEYS": SUPPORT_KEY},
    ) as process:
        insert_operators(process)
        yield process


async def settled_tab(
    server: TipmeterProcess, customer: str, card: str = "tok_visa"
) -> dict[str, Any]:
    """A tab with two tips, settled by the worker: its statement."""
    async with api(server) as http:
        opened = await http.post(
            "/v1/tabs",
            json={
                "customer": customer,
                "currency": "USD",
                "cap_minor": 5_000,
                "payment_method": card,
            },
            headers={"Idempotency-Key": f"open-{customer}"},
        )
        assert opened.status_code == 201, opened.text
        tab_id = opened.json()["tab_id"]
        async with Client(server.ws_url, ticket(Role.VIEWER, customer, currency="USD")) as viewer:
            await viewer.tip("alice", 700, "USD", tip_id=f"tip-{customer}-1")
            await viewer.tip("bella", 300, "USD", tip_id=f"tip-{customer}-2")
        queued = await http.post(f"/v1/customers/{customer}/tabs/{tab_id}/settle")
        assert queued.status_code == 202, queued.text
    return await settled_statement(server, customer, tab_id)


def audit(server: TipmeterProcess, action: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT operator_id, target, outcome FROM console_audit WHERE action = %s "
            "ORDER BY audit_no",
            (action,),
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


async def test_search_by_every_kind_of_number_finds_the_whole_history(
    server: TipmeterProcess,
) -> None:
    statement = await settled_tab(server, "c-search")
    tab_id, capture_id = statement["tab_id"], statement["capture_id"]
    reader = await logged_in(server, "rio")
    async with reader:
        found = await reader.get(f"/console/api/payments/{tab_id}")
        assert found.status_code == 200, found.text
        body = found.json()
        numbers = {
            "tab_id": tab_id,
            "capture_id": capture_id,
            "auth_ref": body["holds"][0]["auth_ref"],
            "tip_id": "tip-c-search-2",
        }
        for kind, number in numbers.items():
            again = await reader.get(f"/console/api/payments/{number}")
            assert again.status_code == 200, (kind, again.text)
            assert again.json()["tab_id"] == tab_id
            assert {e["code"] for e in again.json()["entries"]} >= {"tab_charge", "tab_capture"}
        missing = await reader.get("/console/api/payments/no-such-number")
        assert missing.status_code == 404
        # A read-only operator acts on nothing.
        refused = await reader.post(
            "/console/api/refunds", {"customer": "c-search", "tab_id": tab_id, "reason": "goodwill"}
        )
        assert refused.status_code == 403
    assert audit(server, "refund") == [("rio", "", "role_forbidden")]
    searched = audit(server, "payment_search")
    assert ("rio", "no-such-number", "not_found") in searched
    assert ("rio", capture_id, "ok") in searched


async def test_a_refund_within_policy_and_an_admins_override(server: TipmeterProcess) -> None:
    statement = await settled_tab(server, "c-refund")
    tab_id = statement["tab_id"]
    agent = await logged_in(server, "sam")
    async with agent:
        # A tip is refunded with the model's consent: the policy says so, whoever asks.
        asked = await agent.post(
            "/console/api/refunds",
            {
                "customer": "c-refund",
                "tab_id": tab_id,
                "lines": ["tip:tip-c-refund-1"],
                "reason": "customer_request",
            },
        )
        assert asked.status_code == 201, asked.text
        assert asked.json()["status"] == "awaiting_consent"
        # Support may not override the policy; the console refuses before the API is asked.
        override = {
            "customer": "c-refund",
            "tab_id": tab_id,
            "amount_minor": 50,
            "reason": "goodwill",
            "override_reason": "the stream froze",
        }
        assert (await agent.post("/console/api/refunds", override)).status_code == 403
        # Without the CSRF token nothing is done.
        assert (await agent.post("/console/api/refunds", override, csrf=False)).status_code == 403
    admin = await logged_in(server, "ada")
    async with admin:
        done = await admin.post("/console/api/refunds", override)
        assert done.status_code == 201, done.text
        refund = done.json()
        assert refund["status"] == "succeeded"
        assert refund["amount_minor"] == 50
        history = (await admin.get(f"/console/api/payments/{refund['refund_id']}")).json()
        assert [r["status"] for r in history["refunds"]] == ["awaiting_consent", "succeeded"]
    assert [line for line in audit(server, "refund") if line[0] != "rio"] == [
        ("sam", f"c-refund/{tab_id}", "ok"),
        ("sam", f"c-refund/{tab_id}", "role_forbidden"),
        ("sam", "", "csrf_failed"),
        ("ada", f"c-refund/{tab_id}", "ok"),
    ]
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT detail->>'override_reason' FROM console_audit WHERE operator_id = 'ada' "
            "AND action = 'refund'"
        ).fetchone()
    assert row == ("the stream froze",)


async def test_a_pay_link_for_a_declined_tab_and_clearing_a_dispute_flag(
    server: TipmeterProcess,
) -> None:
    declined = await settled_tab(
        server, "c-declined", card="tok_capture_decline_insufficient_funds"
    )
    assert declined["state"] == "failed"
    async with api(server) as http:
        # The collection sweeper opens a case for the declined tab once the worker wrote it to
        # the ledger (just after Redis's outcome): sweep until it has.
        path = f"/v1/customers/c-declined/tabs/{declined['tab_id']}/collection"

        async def case_opened() -> bool:
            assert (await http.post("/v1/collection/sweep")).status_code == 200
            return (await http.get(path)).status_code == 200

        await eventually(case_opened, timeout_s=CASE_TIMEOUT_S, interval_s=0.2)
        case_id = (await http.get(path)).json()["case_id"]
    agent = await logged_in(server, "sam")
    async with agent:
        link = await agent.post(f"/console/api/collection/cases/{case_id}/links", {})
        assert link.status_code == 201, link.text
        assert "/pay/" in link.json()["url"]
        # A dispute flags its customer; support clears the flag from the console.
        captured = await settled_tab(server, "c-flagged")
        async with api(server) as http:
            dispute = await http.post(
                "/v1/sandbox/disputes",
                json={
                    "capture_id": captured["capture_id"],
                    "dispute_id": "dp-console",
                    "amount_minor": 100,
                },
            )
            assert dispute.status_code == 201, dispute.text
            assert (await http.get("/v1/customers/c-flagged/flag")).status_code == 200
        cleared = await agent.post("/console/api/customers/c-flagged/flag/clear")
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["cleared_by"] == "sam"
        async with api(server) as http:
            assert (await http.get("/v1/customers/c-flagged/flag")).status_code == 404
    assert audit(server, "pay_link") == [("sam", case_id, "ok")]
    assert audit(server, "clear_flag") == [("sam", "c-flagged", "ok")]
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        details = [str(r[0]) for r in conn.execute("SELECT detail::text FROM console_audit")]
    assert not any("/pay/" in d for d in details), "a pay link's URL must not be audited"
