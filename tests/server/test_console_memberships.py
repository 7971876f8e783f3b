"""Memberships in the console against a real server: a customer's subscriptions, and support's
cancel, pause and resume — through the HTTP API (its answers and refusals), audited, by role."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from clients.sdk import Backend
from tests.support.console import insert_operator, logged_in
from tests.support.processes import API_KEY, TipmeterProcess, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLAN_ID = "console-gold"
PLAN = {
    "plan_id": PLAN_ID,
    "kind": "site",
    "prices": {"USD": {"price_minor": 1_000}},
    "features": ["hd"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    with serving(tmp_path_factory, "memberships") as process:
        for name, role in (("sam", "support"), ("rio", "read_only")):
            insert_operator(process, name, role)
        yield process


async def member(server: TipmeterProcess, customer: str) -> str:
    """Sign ``customer`` up for a monthly plan (charged at once); the subscription's id."""
    backend = Backend(server.base_url, API_KEY)
    await backend.create_plan(PLAN)
    sub = await backend.subscribe(
        customer,
        PLAN_ID,
        "USD",
        "tok_visa",
        country="DE",
        country_evidence="billing_address",
        idempotency_key=f"signup-{customer}",
    )
    assert sub["state"] == "active"
    return str(sub["subscription_id"])


def audit(server: TipmeterProcess, prefix: str) -> list[tuple[str, str, str, str]]:
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT operator_id, action, target, outcome FROM console_audit "
            "WHERE action LIKE %s ORDER BY audit_no",
            (prefix + "%",),
        ).fetchall()
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


async def test_support_pauses_resumes_and_cancels_a_membership(server: TipmeterProcess) -> None:
    sid = await member(server, "c-member")
    agent = await logged_in(server, "sam")
    async with agent:
        listed = await agent.get("/console/api/customers/c-member/subscriptions")
        assert listed.status_code == 200, listed.text
        assert [s["subscription_id"] for s in listed.json()["subscriptions"]] == [sid]
        paused = await agent.post(f"/console/api/subscriptions/{sid}/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["pause_at_ms"] == paused.json()["period"]["ends_at_ms"]
        resumed = await agent.post(f"/console/api/subscriptions/{sid}/resume")
        assert resumed.json()["pause_at_ms"] is None
        # The API's refusals reach the console as they are, and are audited with their code.
        again = await agent.post(f"/console/api/subscriptions/{sid}/resume")
        assert (again.status_code, again.json()["error"]["code"]) == (409, "not_allowed")
        bad = await agent.post(f"/console/api/subscriptions/{sid}/cancel", {"mode": "notice"})
        assert bad.status_code == 400
        at_end = await agent.post(
            f"/console/api/subscriptions/{sid}/cancel", {"mode": "period_end"}
        )
        assert (at_end.json()["state"], at_end.json()["cancel_mode"]) == ("active", "period_end")
        now = await agent.post(f"/console/api/subscriptions/{sid}/cancel", {"mode": "now"})
        assert now.json()["state"] == "cancelled"
        without_token = await agent.post(f"/console/api/subscriptions/{sid}/pause", csrf=False)
        assert without_token.status_code == 403
    assert audit(server, "membership_") == [
        ("sam", "membership_search", "c-member", "ok"),
        ("sam", "membership_pause", sid, "ok"),
        ("sam", "membership_resume", sid, "ok"),
        ("sam", "membership_resume", sid, "not_allowed"),
        ("sam", "membership_cancel", sid, "ok"),
        ("sam", "membership_cancel", sid, "ok"),
        ("sam", "membership_pause", "", "csrf_failed"),
    ]


async def test_a_read_only_operator_sees_memberships_and_acts_on_none(
    server: TipmeterProcess,
) -> None:
    sid = await member(server, "c-reader")
    reader = await logged_in(server, "rio")
    async with reader:
        listed = await reader.get("/console/api/customers/c-reader/subscriptions")
        assert listed.json()["subscriptions"][0]["state"] == "active"
        for action in ("pause", "resume", "cancel"):
            refused = await reader.post(f"/console/api/subscriptions/{sid}/{action}")
            assert refused.status_code == 403, action
            assert refused.json()["error"]["code"] == "role_forbidden"
    refusals = [row for row in audit(server, "membership_") if row[0] == "rio"]
    assert [row[3] for row in refusals] == [
        "ok",
        "role_forbidden",
        "role_forbidden",
        "role_forbidden",
    ]
