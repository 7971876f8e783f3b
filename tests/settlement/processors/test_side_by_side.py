"""Three processors serve one deployment side by side — two ``tipmeter sandbox-gateway``
processes of different behaviours and the Segpay Post Pay test process — behind a real server
process with its settlement worker: each tab is held, captured and looked up at its own
processor; a soft decline cascades, a hard one does not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from clients.sdk import Client
from clients.tickets import Role
from metering import keys
from metering.clock import SystemClock
from server.api import tab_id_for
from settlement.gateway import AuthorizationStatus, DeclineReason, Gateway
from settlement.processors.segpay import SegpayGateway, SegpayWire
from settlement.sandbox_http import HttpGateway
from tests.server.conftest import api
from tests.settlement.processors.conftest import (
    ETICKET_ID,
    SegpayProcess,
    start_segpay,
    stop_segpay,
)
from tests.support.processes import TipmeterProcess, ticket
from tests.support.redis_procs import start_standalone
from tests.support.waiting import eventually

SETTLED_STATES = ("settled", "failed", "voided", "expired")


@dataclass
class Deployment:
    server: TipmeterProcess
    alpha: HttpGateway
    beta: HttpGateway
    segpay: SegpayProcess
    redis_url: str


def _sandbox(cwd: Path) -> TipmeterProcess:
    process = TipmeterProcess(["sandbox-gateway"], {}, cwd)
    process.env["TIPMETER_SANDBOX_PORT"] = str(process.port)
    return process.start(ready_path="/v1/captures")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("side-by-side")
    redis_proc = start_standalone(root / "redis")
    alpha, beta = _sandbox(root), _sandbox(root)
    segpay = start_segpay(root)
    server = TipmeterProcess(
        ["serve"],
        {
            "TIPMETER_REDIS_URL": redis_proc.url,
            "TIPMETER_WORKER": "on",
            "TIPMETER_PROCESSORS": "alpha,beta,segpay",
            "TIPMETER_PROCESSOR_ALPHA_KIND": "sandbox-http",
            "TIPMETER_PROCESSOR_ALPHA_URL": alpha.base_url,
            "TIPMETER_PROCESSOR_ALPHA_CURRENCIES": "EUR",
            "TIPMETER_PROCESSOR_BETA_KIND": "sandbox-http",
            "TIPMETER_PROCESSOR_BETA_URL": beta.base_url,
            "TIPMETER_PROCESSOR_BETA_CURRENCIES": "EUR,GBP",
            "TIPMETER_PROCESSOR_BETA_INCREMENTAL": "off",
            "TIPMETER_PROCESSOR_SEGPAY_KIND": "segpay",
            "TIPMETER_PROCESSOR_SEGPAY_URL": segpay.url,
            "TIPMETER_PROCESSOR_SEGPAY_ETICKET_ID": ETICKET_ID,
            "TIPMETER_PROCESSOR_SEGPAY_CURRENCIES": "USD",
            "TIPMETER_PROCESSORS_CASCADE_MAX": "1",
        },
        cwd=root,
    )
    try:
        server.start()
        yield Deployment(
            server, HttpGateway(alpha.base_url), HttpGateway(beta.base_url), segpay, redis_proc.url
        )
    finally:
        server.stop()
        for process in (alpha, beta):
            process.stop()
        stop_segpay(segpay)
        redis_proc.stop()


async def _open(
    d: Deployment, customer: str, currency: str, card: str, **extra: str
) -> tuple[int, dict[str, Any]]:
    async with api(d.server) as http:
        response = await http.post(
            "/v1/tabs",
            json={
                "customer": customer,
                "currency": currency,
                "cap_minor": 5_000,
                "payment_method": card,
                **extra,
            },
            headers={"Idempotency-Key": f"open-{customer}"},
        )
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def _spend_and_settle(d: Deployment, tab: dict[str, Any], amount: int) -> dict[str, Any]:
    customer, currency = tab["customer"], tab["currency"]
    async with Client(d.server.ws_url, ticket(Role.VIEWER, customer, currency=currency)) as viewer:
        await viewer.tip("alice", amount, currency)
    path = f"/v1/customers/{customer}/tabs/{tab['tab_id']}"
    async with api(d.server) as http:
        assert (await http.post(path + "/settle")).status_code == 202
        statement: dict[str, Any] = {}

        async def settled() -> bool:
            statement.update((await http.get(path + "/statement")).json())
            return statement["state"] in SETTLED_STATES

        await eventually(settled, what=f"tab {tab['tab_id']} settles")
        return statement


def _auth_ref(d: Deployment, tab: dict[str, Any]) -> str:
    with redis.Redis.from_url(d.redis_url) as client:
        raw = client.hget(keys.tab(tab["customer"], tab["tab_id"]), "auth_ref")
    assert isinstance(raw, bytes)
    return raw.decode()


async def test_each_tab_settles_at_the_processor_that_holds_it(deployment: Deployment) -> None:
    d = deployment
    opened = {}
    for customer, currency, card, extra in (
        ("c-usd", "USD", "847263533", {}),
        ("c-alpha", "EUR", "tok_visa", {"processor": "alpha"}),
        ("c-beta", "EUR", "tok_visa", {"processor": "beta"}),
        ("c-gbp", "GBP", "tok_visa", {}),
    ):
        status, tab = await _open(d, customer, currency, card, **extra)
        assert status == 201, tab
        opened[customer] = tab
    assert {c: t["processor"] for c, t in opened.items()} == {
        "c-usd": "segpay",
        "c-alpha": "alpha",
        "c-beta": "beta",
        "c-gbp": "beta",
    }
    amounts = {"c-usd": 1_234, "c-alpha": 300, "c-beta": 400, "c-gbp": 500}
    for customer, tab in opened.items():
        statement = await _spend_and_settle(d, tab, amounts[customer])
        assert (statement["state"], statement["captured_minor"]) == (
            "settled",
            amounts[customer],
        )
    refs = {c: _auth_ref(d, t) for c, t in opened.items()}

    # Each capture reached the processor holding the tab, and only that one.
    alpha_log = {(c["auth_ref"], c["amount_minor"]) for c in await d.alpha.capture_log()}
    beta_log = {(c["auth_ref"], c["amount_minor"]) for c in await d.beta.capture_log()}
    assert alpha_log == {(refs["c-alpha"], 300)}
    assert beta_log == {(refs["c-beta"], 400), (refs["c-gbp"], 500)}
    captures = [r for r in d.segpay.requests() if r["path"] == SegpayWire.CAPTURE_PATH]
    assert [(r["transactionid"], r["amount"]) for r in captures] == [(refs["c-usd"], "12.34")]

    # Reconciliation asks each processor about its own holds, by reference.
    segpay = SegpayGateway(d.segpay.url, eticket_id=ETICKET_ID, clock=SystemClock())
    at: dict[str, Gateway] = {
        "c-usd": segpay,
        "c-alpha": d.alpha,
        "c-beta": d.beta,
        "c-gbp": d.beta,
    }
    for customer, gateway in at.items():
        found = await gateway.lookup_authorization(refs[customer])
        assert found is not None
        assert (found.status, found.captured_minor) == (
            AuthorizationStatus.CAPTURED,
            amounts[customer],
        )
    assert await d.alpha.lookup_authorization(refs["c-beta"]) is None


async def test_a_soft_decline_cascades_and_a_hard_one_does_not(deployment: Deployment) -> None:
    d = deployment
    await d.alpha.behave(decline_holds=DeclineReason.DO_NOT_HONOR)
    try:
        status, tab = await _open(d, "c-soft", "EUR", "tok_visa", processor="alpha")
    finally:
        await d.alpha.behave(decline_holds=None)
    assert status == 201, tab
    assert tab["processor"] == "beta"
    with redis.Redis.from_url(d.redis_url) as client:
        tried = client.hget(keys.tab("c-soft", tab["tab_id"]), "processor_tried")
    assert tried == b"alpha:declined:do_not_honor;beta:approved"

    status, body = await _open(d, "c-hard", "EUR", "tok_decline_stolen_card", processor="alpha")
    assert status == 402
    error = body["error"]
    assert (error["code"], error["decline_reason"], error["tried"]) == (
        "card_declined",
        "stolen_card",
        "alpha:declined:stolen_card",
    )
    assert await d.beta.lookup(f"auth:{tab_id_for('c-hard', 'open-c-hard')}") is None


async def test_routing_refuses_what_no_processor_serves(deployment: Deployment) -> None:
    status, body = await _open(deployment, "c-chf", "CHF", "tok_visa")
    assert (status, body["error"]["code"]) == (422, "no_processor")
    status, body = await _open(deployment, "c-usd2", "USD", "847263533", processor="alpha")
    assert (status, body["error"]["code"]) == (422, "no_processor")


async def _raise(d: Deployment, tab: dict[str, Any], cap: int) -> tuple[int, dict[str, Any]]:
    path = f"/v1/customers/{tab['customer']}/tabs/{tab['tab_id']}/cap"
    async with api(d.server) as http:
        response = await http.post(path, json={"cap_minor": cap})
    body: dict[str, Any] = response.json()
    return response.status_code, body


@pytest.mark.parametrize(
    ("customer", "currency", "card", "processor"),
    [("c-raise-b", "EUR", "tok_visa", "beta"), ("c-raise-s", "USD", "847263533", "segpay")],
)
async def test_without_increments_a_raise_is_a_second_hold_and_each_hold_is_captured(
    deployment: Deployment, customer: str, currency: str, card: str, processor: str
) -> None:
    d = deployment
    status, tab = await _open(d, customer, currency, card, processor=processor)
    assert status == 201, tab
    status, raised = await _raise(d, tab, 8_000)
    assert (status, raised["cap_minor"]) == (200, 8_000), raised
    assert (await _raise(d, tab, 8_000))[0] == 200  # a repeat places no third hold
    with redis.Redis.from_url(d.redis_url) as client:
        fields = client.hgetall(keys.tab(customer, tab["tab_id"]))
    second = [k.decode().removeprefix("hold:") for k in fields if k.startswith(b"hold:")]
    assert len(second) == 1
    first = fields[b"auth_ref"].decode()

    statement = await _spend_and_settle(d, tab, 6_500)  # more than the first hold's 5,000

    assert (statement["state"], statement["captured_minor"]) == ("settled", 6_500)
    assert [a["amount_minor"] for a in statement["authorizations"]] == [5_000, 3_000]
    assert "one capture per authorization" in statement["note"]
    if processor == "beta":
        log = [(c["auth_ref"], c["amount_minor"]) for c in await d.beta.capture_log()]
        assert (first, 5_000) in log
        assert (second[0], 1_500) in log
    else:
        captures = [
            (r["transactionid"], r["amount"])
            for r in d.segpay.requests()
            if r["path"] == SegpayWire.CAPTURE_PATH and r["transactionid"] in (first, second[0])
        ]
        assert captures == [(first, "50.00"), (second[0], "15.00")]
