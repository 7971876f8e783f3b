"""Collection as the cam site sees it: a real server process whose in-process worker sweeps
collection on its timer (no call to ``POST /v1/collection/sweep``), and a failed tab read back
through the API once its case ended — the ledger's ``collected`` or ``written_off``, not the
``failed`` Redis still holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.sdk import Client
from clients.tickets import Role
from tests.server.conftest import api, open_tab, read_tab
from tests.settlement.processors.conftest import (
    ETICKET_ID,
    SegpayProcess,
    start_segpay,
    stop_segpay,
)
from tests.support.processes import TipmeterProcess, serving, ticket
from tests.support.redis_procs import start_standalone
from tests.support.waiting import eventually

#: How long the worker's timer may take to open a case or settle a tab (generous: shared CPU).
WAIT_S = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    env = {"TIPMETER_COLLECTION_SWEEP_INTERVAL_MS": "200"}
    with serving(tmp_path_factory, "collect", env) as process:
        yield process


async def _failed_tab(server: TipmeterProcess, customer: str) -> str:
    """A tab whose capture the sandbox declines; its id once the tab reads ``failed``."""
    tab = await open_tab(
        server, customer, cap_minor=2_000, card="tok_capture_decline_insufficient_funds"
    )
    async with Client(server.ws_url, ticket(Role.VIEWER, customer, currency="USD")) as viewer:
        await viewer.tip("alice", 400, "USD")
    async with api(server) as http:
        queued = await http.post(f"/v1/customers/{customer}/tabs/{tab['tab_id']}/settle")
    assert queued.status_code == 202, queued.text
    tab_id = str(tab["tab_id"])

    async def failed() -> bool:
        return bool((await read_tab(server, customer, tab_id))["state"] == "failed")

    await eventually(failed, timeout_s=WAIT_S, interval_s=0.05, what="the tab fails")
    return tab_id


async def _case_opened_by_the_timer(server: TipmeterProcess, customer: str, tab_id: str) -> str:
    path = f"/v1/customers/{customer}/tabs/{tab_id}/collection"
    async with api(server) as http:

        async def opened() -> bool:
            found = await http.get(path)
            assert found.status_code in (200, 404), found.text
            return found.status_code == 200

        await eventually(opened, timeout_s=WAIT_S, interval_s=0.05, what="the timer opens a case")
        case: dict[str, Any] = (await http.get(path)).json()
    assert case["state"] == "open"
    return str(case["case_id"])


async def test_a_tab_collected_through_its_link_reads_collected(server: TipmeterProcess) -> None:
    tab_id = await _failed_tab(server, "c-collect")
    case_id = await _case_opened_by_the_timer(server, "c-collect", tab_id)
    async with api(server) as http:
        made = await http.post(f"/v1/collection/cases/{case_id}/links", json={})
    assert made.status_code == 201, made.text
    url = str(made.json()["url"])
    async with httpx.AsyncClient(timeout=10) as browser:
        assert (await browser.get(url)).status_code == 200
        paid = await browser.post(f"{url}/card", data={"payment_method": "tok_visa"})
    assert paid.status_code == 303, paid.text
    async with api(server) as http:
        case = (await http.get(f"/v1/collection/cases/{case_id}")).json()
        statement = (await http.get(f"/v1/customers/c-collect/tabs/{tab_id}/statement")).json()
    assert case["state"] == "paid"
    # Redis still holds the tab (its keys live for the retention) as the settlement left it;
    # the API answers the ledger's end of it.
    assert (await read_tab(server, "c-collect", tab_id))["state"] == "collected"
    assert statement["state"] == "collected"


async def test_a_written_off_tab_reads_written_off(server: TipmeterProcess) -> None:
    tab_id = await _failed_tab(server, "c-writeoff")
    case_id = await _case_opened_by_the_timer(server, "c-writeoff", tab_id)
    async with api(server) as http:
        written = await http.post(f"/v1/collection/cases/{case_id}/write-off")
    assert written.status_code == 200, written.text
    assert written.json()["state"] == "written_off"
    assert (await read_tab(server, "c-writeoff", tab_id))["state"] == "written_off"


@pytest.fixture
def segpay_server(tmp_path: Path) -> Iterator[tuple[TipmeterProcess, SegpayProcess]]:
    """A server whose one processor is Segpay (the Segpay test process, posting its postbacks
    to this server)."""
    redis = start_standalone(tmp_path / "redis")
    server = TipmeterProcess(
        ["serve"],
        {
            "TIPMETER_REDIS_URL": redis.url,
            "TIPMETER_PROCESSORS": "segpay",
            "TIPMETER_PROCESSOR_SEGPAY_KIND": "segpay",
            "TIPMETER_PROCESSOR_SEGPAY_ETICKET_ID": ETICKET_ID,
        },
        cwd=tmp_path,
    )
    segpay = start_segpay(tmp_path, postback=f"{server.base_url}/pay/postback")
    server.env["TIPMETER_PROCESSOR_SEGPAY_URL"] = segpay.url
    try:
        yield server.start(), segpay
    finally:
        server.stop()
        stop_segpay(segpay)
        redis.stop()


async def test_a_link_is_paid_on_segpays_page_and_its_postback_records_it(
    segpay_server: tuple[TipmeterProcess, SegpayProcess],
) -> None:
    server, segpay = segpay_server
    async with api(server) as http:
        uploaded = await http.post(
            "/v1/collection/batches",
            content=b"customer,amount_minor,currency,phone,email,language\n"
            b"alice,1250,USD,+37060012345,,en\n",
            headers={"Content-Type": "text/csv", "Idempotency-Key": "segpay-batch"},
        )
        assert uploaded.status_code == 200, uploaded.text
        case_id = uploaded.json()["rows"][0]["case_id"]
        made = await http.post(f"/v1/collection/cases/{case_id}/links", json={})
        assert made.status_code == 201, made.text
    url = str(made.json()["url"])
    async with httpx.AsyncClient(timeout=10) as browser:
        assert (await browser.get(url)).status_code == 200
        to_segpay = await browser.get(f"{url}/card")
        assert to_segpay.status_code == 303
        page_url = to_segpay.headers["location"]
        assert page_url.startswith(f"{segpay.url}/billing/poset.cgi?")
        assert "merchantreference=collect%3A" in page_url
        back = await browser.post(page_url, data={"purchaseid": "4242"})
        assert back.status_code == 303
        assert back.headers["location"].startswith(f"{url}/return?transactionid=")
        # Segpay's postback reached the server before the customer did, and it confirmed
        # the payment with Segpay's status request.
        async with api(server) as http:
            case = (await http.get(f"/v1/collection/cases/{case_id}")).json()
        assert case["state"] == "paid"
        returned = await browser.get(back.headers["location"])
        assert returned.status_code == 303
        assert returned.headers["location"] == f"/pay/{url.rsplit('/', 1)[1]}/outcome"
        outcome = await browser.get(f"{url}/outcome")
    assert outcome.status_code == 200
    assert "Paid" in outcome.text
    paths = [r["path"] for r in segpay.requests()]
    assert paths.count("/billing/poset.cgi") == 1
    assert "/PostPay/PostPayStatus/" in paths
