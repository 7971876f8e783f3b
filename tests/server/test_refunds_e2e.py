"""Refunds, disputes and payment search through the HTTP API of a real server process (real
Redis, real PostgreSQL, the in-process sandbox and settlement worker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from clients.sdk import Client
from clients.tickets import Role
from settlement.refunds.notices import sandbox_notice, signed_headers
from settlement.webhooks import verify_signature
from tests.server.conftest import api, open_tab, post_tab, settled_statement
from tests.settlement.receiver import receiving
from tests.support.processes import TipmeterProcess, serving, ticket
from tests.support.redis_procs import start_standalone
from tests.support.waiting import eventually

SUPPORT_KEY = "support-key-for-tests-0123456789abcdef"
NOTICE_SECRET = "whsec_sandbox_notices"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    env = {
        "TIPMETER_SUPPORT_API_KEYS": SUPPORT_KEY,
        "TIPMETER_DISPUTE_SECRETS": f"sandbox={NOTICE_SECRET}",
    }
    with serving(tmp_path_factory, "refunds", env) as process:
        yield process


async def _settled_tab(server: TipmeterProcess, customer: str) -> dict[str, Any]:
    tab_id = (await open_tab(server, customer, cap_minor=5_000))["tab_id"]
    async with api(server) as http:
        async with Client(server.ws_url, ticket(Role.VIEWER, customer, currency="USD")) as viewer:
            await viewer.tip("alice", 700, "USD", tip_id=f"tip-{customer}-1")
            await viewer.tip("bella", 300, "USD", tip_id=f"tip-{customer}-2")
        queued = await http.post(f"/v1/customers/{customer}/tabs/{tab_id}/settle")
        assert queued.status_code == 202, queued.text
    return await settled_statement(server, customer, tab_id)


async def test_a_refund_by_consent_is_found_by_every_number(server: TipmeterProcess) -> None:
    statement = await _settled_tab(server, "c-rf")
    tab_id, capture_id = statement["tab_id"], statement["capture_id"]
    async with api(server) as http:
        ask = {
            "refund_id": "rf-e2e-1",
            "customer": "c-rf",
            "tab_id": tab_id,
            "lines": ["tip:tip-c-rf-1"],
            "reason": "customer_request",
        }
        asked = await http.post("/v1/refunds", json=ask)
        assert asked.status_code == 201, asked.text
        assert asked.json()["status"] == "awaiting_consent"
        again = await http.post("/v1/refunds", json=ask)
        assert again.status_code == 200, again.text
        consented = await http.post(
            "/v1/refunds/rf-e2e-1/consent", json={"accept": True, "by": "alice"}
        )
        assert consented.status_code == 200, consented.text
        refund = consented.json()
        assert (refund["status"], refund["decided_by"]) == ("succeeded", "model:alice")
        # An override without the support key is refused; with it, it is carried out.
        override = {
            "refund_id": "rf-e2e-2",
            "capture_id": capture_id,
            "amount_minor": 50,
            "reason": "goodwill",
            "override": {"by": "agent-1", "reason": "late stream"},
        }
        refused = await http.post("/v1/refunds", json=override)
        assert refused.status_code == 403, refused.text
        done = await http.post(
            "/v1/refunds", json=override, headers={"Tipmeter-Support-Key": SUPPORT_KEY}
        )
        assert done.status_code == 201, done.text
        assert done.json()["status"] == "succeeded"

        dispute = await http.post(
            "/v1/sandbox/disputes",
            json={"capture_id": capture_id, "dispute_id": "dp_e2e", "amount_minor": 100},
        )
        assert dispute.status_code == 201, dispute.text

        holds = (await http.get(f"/v1/payments/{tab_id}")).json()["holds"]
        numbers = {
            "capture_id": capture_id,
            "auth_ref": holds[0]["auth_ref"],
            "refund_id": "rf-e2e-1",
            "processor_refund": refund["processor_refund_id"],
            "dispute_id": "dp_e2e",
            "tab_id": tab_id,
            "tip_id": "tip-c-rf-2",
        }
        for kind, number in numbers.items():
            found = await http.get(f"/v1/payments/{number}")
            assert found.status_code == 200, (kind, found.text)
            body = found.json()
            assert body["tab_id"] == tab_id, kind
            assert [r["refund_id"] for r in body["refunds"]] == ["rf-e2e-1", "rf-e2e-2"]
            assert [d["dispute_id"] for d in body["disputes"]] == ["dp_e2e"]
            assert {e["code"] for e in body["entries"]} >= {
                "tab_charge",
                "tab_capture",
                "refund",
                "dispute_opened",
            }
        missing = await http.get("/v1/payments/nothing-by-this-number")
        assert missing.status_code == 404


async def _open_again(http: httpx.AsyncClient, customer: str) -> httpx.Response:
    """Ask for another tab for ``customer`` (one idempotency key: the answer is the test's)."""
    return await post_tab(http, customer, cap_minor=1_000, key=f"open-{customer}-again")


async def test_a_chargeback_flags_the_customer_and_is_answered_with_evidence(
    server: TipmeterProcess,
) -> None:
    statement = await _settled_tab(server, "c-cb")
    capture_id = statement["capture_id"]
    async with api(server) as http:
        raised = await http.post("/v1/sandbox/disputes", json={"capture_id": capture_id})
        assert raised.status_code == 201, raised.text
        dispute = raised.json()
        assert (dispute["status"], dispute["amount_minor"]) == ("open", 1_000)
        # The customer can open no new tab until support clears the flag.
        blocked = await _open_again(http, "c-cb")
        assert blocked.status_code == 403, blocked.text
        assert blocked.json()["error"]["code"] == "customer_flagged"

        evidence = await http.get(f"/v1/disputes/{dispute['dispute_id']}/evidence")
        assert evidence.status_code == 200, evidence.text
        package = evidence.json()
        assert package["capture"]["capture_id"] == capture_id
        assert {t["tip_id"] for t in package["tips"]} == {"tip-c-cb-1", "tip-c-cb-2"}
        assert package["statement"]["total_minor"] == 1_000
        page = await http.get(f"/v1/disputes/{dispute['dispute_id']}/evidence.html")
        assert page.status_code == 200
        assert capture_id in page.text

        lost = await http.post(
            "/v1/sandbox/disputes",
            json={"capture_id": capture_id, "dispute_id": dispute["dispute_id"], "status": "lost"},
        )
        assert lost.json()["status"] == "lost"

        ratio = await http.get("/v1/disputes/ratio")
        assert ratio.status_code == 200, ratio.text
        (sandbox,) = ratio.json()["processors"]
        assert sandbox["disputes"] >= 1
        assert sandbox["alert"]  # far above 1.5 %
        metrics = await http.get("/metrics")
        assert 'tipmeter_dispute_ratio{processor="sandbox"}' in metrics.text

        cleared = await http.delete(
            "/v1/customers/c-cb/flag?by=agent-2", headers={"Tipmeter-Support-Key": SUPPORT_KEY}
        )
        assert cleared.status_code == 200, cleared.text
        reopened = await _open_again(http, "c-cb")
        assert reopened.status_code == 201, reopened.text


async def test_a_processors_signed_notices_open_a_dispute_once(server: TipmeterProcess) -> None:
    statement = await _settled_tab(server, "c-notice")
    capture_id = statement["capture_id"]
    own = sandbox_notice(
        dispute_id="dp_notice_1",
        capture_id=capture_id,
        currency="USD",
        amount_minor=300,
        fee_minor=1_500,
    )
    stripe = orjson.dumps(
        {
            "id": "evt_x",
            "type": "charge.dispute.created",
            "data": {
                "object": {
                    "id": "du_notice_2",
                    "payment_intent": capture_id,
                    "amount": 200,
                    "currency": "usd",
                    "status": "needs_response",
                }
            },
        }
    )
    now_s = int(time.time())
    async with api(server) as http:
        path = "/v1/disputes/notices/sandbox"
        forged = await http.post(path, content=own, headers=signed_headers(own, "forged", now_s))
        assert forged.status_code == 400, forged.text
        assert forged.json()["error"]["code"] == "invalid_signature"
        headers = signed_headers(own, NOTICE_SECRET, now_s)
        first = await http.post(path, content=own, headers=headers)
        assert first.status_code == 201, first.text
        again = await http.post(path, content=own, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        mapped = await http.post(
            path, content=stripe, headers=signed_headers(stripe, NOTICE_SECRET, now_s, stripe=True)
        )
        assert mapped.status_code == 201, mapped.text
        assert (mapped.json()["capture_id"], mapped.json()["amount_minor"]) == (capture_id, 200)
        found = (await http.get(f"/v1/payments/{capture_id}")).json()
        assert [d["dispute_id"] for d in found["disputes"]] == ["dp_notice_1", "du_notice_2"]
        unknown = await http.post("/v1/disputes/notices/elsewhere", content=own, headers=headers)
        assert unknown.status_code == 404


async def test_a_refund_is_announced_by_a_signed_webhook_and_its_delivery_recorded(
    tmp_path: Path,
) -> None:
    redis = start_standalone(tmp_path / "redis")
    secret = "whsec_refund_webhooks"
    try:
        async with receiving() as receiver:
            server = TipmeterProcess(
                ["serve"],
                {
                    "TIPMETER_REDIS_URL": redis.url,
                    "TIPMETER_WORKER": "on",
                    "TIPMETER_WEBHOOK_URL": receiver.url,
                    "TIPMETER_WEBHOOK_SECRET": secret,
                },
                tmp_path,
            ).start()
            try:
                statement = await _settled_tab(server, "c-hook")
                async with api(server) as http:
                    refund = await http.post(
                        "/v1/refunds",
                        json={
                            "refund_id": "rf-hook",
                            "customer": "c-hook",
                            "tab_id": statement["tab_id"],
                            "amount_minor": 20,
                            "reason": "technical_problem",
                            "lines": ["tip:tip-c-hook-2"],
                        },
                    )
                    assert refund.status_code == 201, refund.text
                    # A tip needs the model's consent; she gives it.
                    done = await http.post(
                        "/v1/refunds/rf-hook/consent", json={"accept": True, "by": "bella"}
                    )
                    assert done.json()["status"] == "succeeded", done.text

                    await eventually(
                        lambda: any(
                            orjson.loads(r.body)["type"] == "refund.succeeded"
                            for r in receiver.received
                        ),
                        what="the refund.succeeded webhook",
                    )
                    (hook,) = [
                        r
                        for r in receiver.received
                        if orjson.loads(r.body)["type"] == "refund.succeeded"
                    ]
                    verify_signature(
                        hook.body,
                        hook.headers["tipmeter-signature"],
                        secret,
                        now_s=int(time.time()),
                    )
                    data = orjson.loads(hook.body)["data"]
                    assert (data["refund_id"], data["amount_minor"]) == ("rf-hook", 20)
                    # The delivery is part of the payment's history.

                    async def recorded() -> bool:
                        found = (await http.get("/v1/payments/rf-hook")).json()
                        return "refund.succeeded" in {w["event_type"] for w in found["webhooks"]}

                    await eventually(recorded, what="the delivery is recorded")
            finally:
                server.stop()
    finally:
        redis.stop()
