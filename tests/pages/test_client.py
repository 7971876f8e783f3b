"""The browser client (clients/js/tipmeter.js) tested inside Chromium: its pure helpers, and its
reconnect, resume and resend logic against the real server, with the network cut or silenced
by a TCP proxy at the moment each test chooses (tests/pages/client_tests.mjs holds the tests;
each of its exports is one test here)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio
from playwright.async_api import Page, Route

from server.embedded_redis import RedisServer
from tests.pages.conftest import NETWORK_FAILURES, Pages, Site, unique
from tests.support.processes import TipmeterProcess
from tests.support.proxy import Proxy

pytestmark = pytest.mark.asyncio(loop_scope="session")

TESTS_MODULE: Final = Path(__file__).with_name("client_tests.mjs")
CLIENT_TESTS: Final = (
    "helpersKeepMoneyInIntegers",
    "backoffIsFullJitterAndBounded",
    "idsAndCursors",
    "refusesFloatsBeforeSending",
    "keepsTheNewestTabAndDropsRepeatedEvents",
    "resumesRoomEventsAfterTheLastOne",
    "forgetsARoomItMayNotFollow",
    "resendsAnUnansweredTipWithTheSameId",
    "queuesWhileDisconnectedWithinBounds",
    "aSilentConnectionIsDetectedAndReplaced",
    "speaksMessagePack",
)
#: Tested on their own below, with servers of their own.
CLIENT_TESTS_ALONE: Final = ("followsADrainToAnotherServer",)


@pytest_asyncio.fixture(loop_scope="session")
async def harness(pages: Pages, site: Site) -> AsyncIterator[Page]:
    """A page of the server's origin that can import the tests, and call back into Python to
    cut or silence the proxy and to read tabs through the HTTP API."""

    async def serve_tests(route: Route) -> None:
        await route.fulfill(path=TESTS_MODULE, content_type="text/javascript")

    async def control(action: str, args: dict[str, Any]) -> Any:
        if action == "cut":
            site.proxy.cut()
        elif action == "swallow":
            site.proxy.swallow_downstream = bool(args["on"])
        elif action == "tab":
            return await site.tab(args["customer"], args["tab_id"])
        else:
            raise ValueError(f"unknown action {action!r}")
        return None

    page = await pages.open(f"{site.base}/pages/", name="client tests", allow=NETWORK_FAILURES)
    await page.route("**/__tests__/client_tests.mjs", serve_tests)
    await page.expose_function("tipmeterTest", control)
    yield page


async def run_client_test(harness: Page, name: str, context: dict[str, str]) -> None:
    """Run the export ``name`` of the test module in the page; its failure fails the test."""
    await harness.evaluate(
        "([name, context]) => import('/__tests__/client_tests.mjs').then((m) => m[name](context))",
        [name, context],
    )


@pytest.mark.parametrize("name", CLIENT_TESTS)
async def test_the_browser_client(harness: Page, site: Site, name: str) -> None:
    context = {
        "directWs": site.server.ws_url,
        "proxiedWs": f"ws://127.0.0.1:{site.proxy.port}/ws",
        "customer": unique("viewer"),
        "room": unique("room"),
    }
    await run_client_test(harness, name, context)


async def test_every_export_of_the_test_module_runs() -> None:
    exported = {
        line.split("(")[0].removeprefix("export async function ").strip()
        for line in TESTS_MODULE.read_text().splitlines()
        if line.startswith("export async function ")
    }
    assert exported == {*CLIENT_TESTS, *CLIENT_TESTS_ALONE}


async def test_the_browser_client_follows_a_drain(
    harness: Page, site: Site, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A server that drains sends `drain` and closes; the client comes back after the delay it
    names, through a proxy that by then leads to another server."""
    draining = TipmeterProcess(
        ["serve"],
        {
            "TIPMETER_REDIS_URL": redis_server.url,
            "TIPMETER_ALLOWED_ORIGINS": site.base,
            "TIPMETER_DRAIN_DELAY_S": "0",
        },
        cwd=tmp_path,
    ).start()
    try:
        async with Proxy(draining.port) as proxy:

            async def drain() -> None:
                proxy.target_port = site.server.port
                draining.signal(signal.SIGTERM)

            await harness.expose_function("tipmeterDrain", drain)
            await run_client_test(
                harness,
                "followsADrainToAnotherServer",
                {
                    "drainingWs": f"ws://127.0.0.1:{proxy.port}/ws",
                    "customer": unique("viewer"),
                    "room": unique("room"),
                },
            )
        assert draining.wait(30) == 0
    finally:
        draining.stop()
