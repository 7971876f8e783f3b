"""Fixtures for end-to-end tests: real tipmeter processes on loopback, sharing one Redis."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Final

import httpx
import pytest

from clients.errors import Refused
from clients.protocol import ServerMessage
from clients.sdk import Client
from server.embedded_redis import RedisServer
from tests.support.conformance import checked_answers
from tests.support.processes import API_KEY, TipmeterProcess
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TipmeterProcess, TipmeterProcess]]:
    """Two server processes (A and B) on the session's Redis, like two nodes behind a balancer."""
    cwd = tmp_path_factory.mktemp("pair")
    env = {"TIPMETER_REDIS_URL": redis_server.url}
    a = TipmeterProcess(["serve"], env, cwd=cwd).start()
    try:
        b = TipmeterProcess(["serve"], env, cwd=cwd).start()
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def servers(
    pair: tuple[TipmeterProcess, TipmeterProcess], redis_url: str
) -> tuple[TipmeterProcess, TipmeterProcess]:
    """The pair, with Redis flushed before the test."""
    return pair


def api(server: TipmeterProcess) -> httpx.AsyncClient:
    """An HTTP client for ``server``'s API, with the test API key. Each answer of a refunds,
    disputes or collection route is checked against the schema ``/openapi.json`` declares."""
    return httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
        event_hooks={"response": [checked_answers(server)]},
    )


async def post_tab(
    http: httpx.AsyncClient,
    customer: str,
    cap_minor: int = 10_000,
    currency: str = "USD",
    card: str = "tok_visa",
    key: str | None = None,
) -> httpx.Response:
    """Ask the HTTP API for a tab (idempotency key ``key``, by default one per customer and
    currency); the answer is the caller's to check."""
    return await http.post(
        "/v1/tabs",
        json={
            "customer": customer,
            "currency": currency,
            "cap_minor": cap_minor,
            "payment_method": card,
        },
        headers={"Idempotency-Key": key or f"open-{customer}-{currency}"},
    )


async def open_tab(
    server: TipmeterProcess,
    customer: str,
    cap_minor: int = 10_000,
    currency: str = "USD",
    card: str = "tok_visa",
) -> dict[str, Any]:
    """Open a tab through the HTTP API; fail the test unless it opens."""
    async with api(server) as http:
        response = await post_tab(http, customer, cap_minor, currency, card)
    assert response.status_code == 201, response.text
    tab: dict[str, Any] = response.json()
    return tab


async def get_json(server: TipmeterProcess, path: str) -> dict[str, Any]:
    """GET ``path`` from ``server``'s API; fail the test unless it answers 200."""
    async with api(server) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def read_tab(server: TipmeterProcess, customer: str, tab_id: str) -> dict[str, Any]:
    """Read a tab through the HTTP API."""
    return await get_json(server, f"/v1/customers/{customer}/tabs/{tab_id}")


#: The states in which a tab's settlement has an outcome.
SETTLED_STATES: Final = ("settled", "failed", "voided", "expired")


async def settled_statement(
    server: TipmeterProcess, customer: str, tab_id: str, timeout_s: float = 15.0
) -> dict[str, Any]:
    """The tab's statement once its settlement has an outcome; fail after ``timeout_s``."""
    path = f"/v1/customers/{customer}/tabs/{tab_id}/statement"
    body: dict[str, Any] = {}

    async def settled() -> bool:
        body.update(await get_json(server, path))
        return body["state"] in SETTLED_STATES

    await eventually(settled, timeout_s=timeout_s, what=f"tab {tab_id} settles")
    return body


async def next_of(
    client: Client,
    kind: type[ServerMessage],
    timeout_s: float = 5.0,
    where: Callable[[Any], bool] = lambda message: True,
) -> Any:
    """The next pushed message of ``kind`` that ``where`` accepts (others are skipped); fail
    after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        message = await client.next_message(remaining)
        if isinstance(message, kind) and where(message):
            return message
    raise AssertionError(f"no {kind.__name__} within {timeout_s} s")


#: Refusals that say "not now": a tip refused so is sent again with the same id.
RETRYABLE: Final = ("unavailable", "busy", "internal_error")


async def tip_until_answered(
    viewer: Client, room: str, tip_id: str, timeout_s: float = 60, interval_s: float = 0.05
) -> None:
    """Send one tip of 1 USD until it is answered applied or duplicate (the same id every time:
    at most one applies), while the server answers that it cannot now."""

    refusals: Counter[str] = Counter()

    async def answered() -> bool:
        try:
            await viewer.tip(room, 1, "USD", tip_id=tip_id)
        except Refused as refused:
            if refused.code not in RETRYABLE:
                raise
            refusals[f"{refused.code}: {refused.message}"] += 1
            return False
        return True

    try:
        await eventually(answered, timeout_s=timeout_s, interval_s=interval_s, what=f"tip {tip_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; refused {dict(refusals)}") from None
