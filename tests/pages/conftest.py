"""Fixtures for the browser tests: one real ``tipmeter serve`` process on loopback with its demo
backend and its settlement worker on (so "End and pay" really captures, through the same
in-process sandbox gateway that placed the hold), on a Redis of its own, a TCP proxy in front
of it (to drop the network at the worst moment), and Debian's headless Chromium driven by
Playwright — the system browser, never a downloaded one.

Everything async here lives in one event loop for the whole session (``loop_scope="session"``)
because a Playwright browser and the proxy's sockets belong to the loop that made them; the
test modules mark their tests with the same loop scope.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from server.embedded_redis import free_port
from tests.support.conformance import checked_answers
from tests.support.processes import API_KEY, TipmeterProcess
from tests.support.proxy import Proxy
from tests.support.redis_procs import start_standalone
from tests.support.waiting import eventually

#: Debian's chromium package (installed by `make test`); CHROMIUM_BIN points elsewhere if needed.
CHROMIUM_BIN: Final = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
#: Flags for a quiet, deterministic headless browser that talks only to loopback.
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: The repository's root (a relative TIPMETER_SCREENSHOTS is taken from here).
REPO_DIR: Final = Path(__file__).resolve().parents[2]
#: Names the folder to keep the pages' screenshots in (`make screenshots` sets it to
#: docs/screenshots, which the README shows). Unset, screenshots go to each test's own temporary
#: folder, so a test run never rewrites a tracked file.
SCREENSHOTS_ENV: Final = "TIPMETER_SCREENSHOTS"
#: Longest wait of a UI assertion, in milliseconds.
UI_TIMEOUT_MS: Final = 10_000
#: Tab states a settlement ends in (the statement's ``outcome`` is set in each).
SETTLED_STATES: Final = ("settled", "failed", "voided", "expired")
#: Longest wait for the settlement worker to record a tab's outcome, in seconds.
SETTLE_TIMEOUT_S: Final = 15.0
#: Console errors Chromium itself logs when a test cuts the network on purpose.
NETWORK_FAILURES: Final = (
    re.compile(r"WebSocket connection to '.*' failed"),
    re.compile(r"Failed to load resource: net::ERR_"),
    re.compile(r"WebSocket is closed before the connection is established"),
)


@dataclass
class Site:
    """The server under test, the proxy in front of it, and the origins pages load from."""

    server: TipmeterProcess
    proxy: Proxy

    @property
    def base(self) -> str:
        """The server, reached directly."""
        return self.server.base_url

    @property
    def proxied(self) -> str:
        """The server, reached through the proxy (pages loaded from here can lose the network)."""
        return f"http://127.0.0.1:{self.proxy.port}"

    def api(self) -> httpx.AsyncClient:
        """The HTTP API with the cam-site backend's key (what the browser never holds)."""
        return httpx.AsyncClient(
            base_url=self.base,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
            event_hooks={"response": [checked_answers(self.server)]},
        )

    async def tab(self, customer: str, tab_id: str) -> dict[str, Any]:
        """A tab with its lines, read through the HTTP API."""
        async with self.api() as http:
            response = await http.get(f"/v1/customers/{customer}/tabs/{tab_id}")
        assert response.status_code == 200, response.text
        tab: dict[str, Any] = response.json()
        return tab

    async def statement(self, customer: str, tab_id: str) -> dict[str, Any]:
        """A tab's itemized statement, read through the HTTP API."""
        async with self.api() as http:
            response = await http.get(f"/v1/customers/{customer}/tabs/{tab_id}/statement")
        assert response.status_code == 200, response.text
        statement: dict[str, Any] = response.json()
        return statement

    async def settled_statement(self, customer: str, tab_id: str) -> dict[str, Any]:
        """A tab's statement once the settlement worker recorded its outcome; fails after
        :data:`SETTLE_TIMEOUT_S`."""
        statement: dict[str, Any] = {}

        async def settled() -> bool:
            statement.update(await self.statement(customer, tab_id))
            return statement["state"] in SETTLED_STATES

        await eventually(settled, timeout_s=SETTLE_TIMEOUT_S, what=f"tab {tab_id} settles")
        return statement

    async def capture(self, capture_id: str) -> dict[str, Any]:
        """The statement support finds from a capture id (``GET /v1/captures/{id}``)."""
        async with self.api() as http:
            response = await http.get(f"/v1/captures/{capture_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


#: The site's unlocks the pages' server sells in every room (as ``site.<id>``).
SITE_UNLOCKS = (
    '[{"item_id": "hd", "name": "HD for this show", "prices": {"USD": 150}, "duration_s": 3600}]'
)


def unique(kind: str) -> str:
    """A fresh demo id (``demo-<kind>-<hex>``): tests share one Redis and never collide."""
    return f"demo-{kind}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    """The system Chromium; fails with what to do when it is missing."""
    if not Path(CHROMIUM_BIN).exists():
        pytest.fail(
            f"{CHROMIUM_BIN} is missing: run `make chromium` (Debian's chromium package), or set "
            "CHROMIUM_BIN to a Chromium binary"
        )
    return CHROMIUM_BIN


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """``tipmeter serve`` with the demo backend and a settlement worker on, behind a proxy.

    It has a Redis of its own: its worker and sweeper settle every tab they find, so on the
    session's shared Redis they would take other tests' tabs (whose holds this process's
    sandbox gateway never placed). The proxy listens before the server starts, so the server
    can allow the proxy's origin (pages loaded through it open their WebSocket through it too).
    """
    redis = start_standalone(tmp_path_factory.mktemp("pages-redis"))
    port = free_port()
    try:
        async with Proxy(port) as proxy:
            origins = f"http://127.0.0.1:{port},http://127.0.0.1:{proxy.port}"
            server = TipmeterProcess(
                ["serve"],
                {
                    "TIPMETER_REDIS_URL": redis.url,
                    "TIPMETER_DEMO_API": "on",
                    "TIPMETER_WORKER": "on",
                    "TIPMETER_ALLOWED_ORIGINS": origins,
                    # A site-wide unlock every room sells (tests/pages/test_purchase_pages.py).
                    "TIPMETER_SITE_UNLOCKS": SITE_UNLOCKS,
                },
                cwd=tmp_path_factory.mktemp("pages"),
                port=port,
            ).start()
            try:
                yield Site(server, proxy)
            finally:
                server.stop()
    finally:
        redis.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_bin: str) -> AsyncIterator[Browser]:
    """One headless Chromium for the session (each test gets fresh contexts: no shared state)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_bin, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Pages:
    """Browser pages of one test, each in its own context (its own storage and network), with
    everything they logged. At the end of the test none may have logged an error."""

    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    async def open(
        self,
        url: str,
        *,
        name: str,
        viewport: tuple[int, int] = (1280, 900),
        allow: Sequence[re.Pattern[str]] = (),
    ) -> Page:
        """A new context and page at ``url``; ``allow`` lists console errors it may log (the
        browser's own reports of a network the test cut on purpose)."""
        context = await self.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, color_scheme="dark"
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        self.contexts.append(context)
        page = await context.new_page()
        self.watch(page, name, allow)
        await page.goto(url)
        return page

    def watch(self, page: Page, name: str, allow: Sequence[re.Pattern[str]] = ()) -> None:
        """Record ``page``'s console errors and uncaught exceptions."""

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not any(p.search(message.text) for p in allow):
                self.errors.append(f"{name}: console error: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"{name}: uncaught: {error}"))

    async def close(self) -> None:
        """Close every context."""
        for context in self.contexts:
            await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def pages(browser: Browser, site: Site) -> AsyncIterator[Pages]:
    """This test's pages; fails the test if any of them logged an error."""
    site.proxy.swallow_downstream = False
    opened = Pages(browser)
    try:
        yield opened
    finally:
        await opened.close()
        site.proxy.swallow_downstream = False
    assert not opened.errors, "the pages logged errors:\n" + "\n".join(opened.errors)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where this test leaves its screenshots: the folder TIPMETER_SCREENSHOTS names (`make
    screenshots`), otherwise the test's ``tmp_path`` — the screenshot is still taken, which
    proves the page renders, but the repository is left as it was."""
    named = os.environ.get(SCREENSHOTS_ENV, "")
    folder = REPO_DIR / named if named else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder
