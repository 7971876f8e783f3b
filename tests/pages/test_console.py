"""The operator console in a real headless Chromium against a real ``tipmeter serve`` process with
a seeded ledger: login and lockout, every chart drawn from the seeded data, role limits. The
test marked ``screenshots`` leaves docs/screenshots/console-*.png (`make screenshots`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from loadtest import console_seed
from server.console import auth
from tests.pages.conftest import Pages
from tests.support.console import PASSWORD, insert_operator, insert_operators
from tests.support.processes import TipmeterProcess, serving

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Settlements seeded, spread over the days before today (the console's default window).
SEEDED_N = 600
SEEDED_DAYS = 45
#: A refused login is an HTTP error the browser itself reports on the console.
REFUSED = (re.compile(r"Failed to load resource: the server responded with a status of 4\d\d"),)


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    """A server with a seeded ledger and one operator of each role."""
    with serving(
        tmp_path_factory,
        "console-pages",
        {"TIPMETER_SUPPORT_API_KEYS": "pages-support-key-0123456789abcdefghijkl"},
    ) as process:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        console_seed.seed(
            process.env["TIPMETER_DATABASE_URL"],
            settlements_n=SEEDED_N,
            since=today - timedelta(days=SEEDED_DAYS - 1),
            days=SEEDED_DAYS,
        )
        insert_operators(process)
        yield process


@pytest_asyncio.fixture(loop_scope="session")
async def console_pages(browser: Browser) -> AsyncIterator[Pages]:
    """This test's pages; fails the test if any of them logged an error."""
    opened = Pages(browser)
    try:
        yield opened
    finally:
        await opened.close()
    assert not opened.errors, "the pages logged errors:\n" + "\n".join(opened.errors)


async def log_in(page: Page, name: str, password: str = PASSWORD) -> None:
    """Fill and send the login form."""
    await page.fill("#login-name", name)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")


async def open_console(
    pages: Pages, server: TipmeterProcess, name: str, allow: tuple[re.Pattern[str], ...] = ()
) -> Page:
    """A page logged in as ``name``, on its first section (``allow``: console errors it may
    log, such as a search that finds nothing: a 404)."""
    page = await pages.open(f"{server.base_url}/console/", name=f"console-{name}", allow=allow)
    await log_in(page, name)
    await expect(page.locator("#who")).to_contain_text(name)
    return page


async def test_login_then_logout(console_pages: Pages, console_server: TipmeterProcess) -> None:
    page = await open_console(console_pages, console_server, "rio")
    await expect(page.locator("#who")).to_have_text("rio · read-only")
    await expect(page.locator("#login-card")).to_be_hidden()
    # The cookie is HttpOnly: the page's script cannot read it.
    assert auth.COOKIE_NAME not in await page.evaluate("document.cookie")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == auth.COOKIE_NAME)
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    await page.reload()
    await expect(page.locator("#who")).to_have_text("rio · read-only")
    # The first section is the live panel, pushed over its WebSocket: today's seeded revenue.
    await expect(page.locator("#live-card")).to_have_attribute(
        "data-snapshots", re.compile("[1-9]")
    )
    await expect(page.locator("#live-revenue")).to_contain_text("$")
    await page.click("#logout")
    await expect(page.locator("#login-card")).to_be_visible()
    await page.reload()
    await expect(page.locator("#login-card")).to_be_visible()


async def test_repeated_failures_lock_the_login(
    console_pages: Pages, console_server: TipmeterProcess
) -> None:
    insert_operator(console_server, "kim", "support")
    page = await console_pages.open(
        f"{console_server.base_url}/console/", name="console-lockout", allow=REFUSED
    )
    for _ in range(auth.LOGIN_FAILURES_MAX):
        await log_in(page, "kim", "wrong password, again")
        await expect(page.locator("#login-error")).to_have_attribute("data-code", "login_failed")
        await page.evaluate("document.getElementById('login-error').dataset.code = ''")
    await log_in(page, "kim")
    await expect(page.locator("#login-error")).to_have_attribute("data-code", "locked")
    await expect(page.locator("#login-error")).to_contain_text("locked")
    await expect(page.locator("#who")).to_be_hidden()


@pytest.mark.screenshots
async def test_every_chart_renders_from_the_seeded_ledger(
    console_pages: Pages, console_server: TipmeterProcess, screenshots: Path
) -> None:
    page = await open_console(console_pages, console_server, "ada")
    await page.click("#tabs button[data-section=analyses]")
    for name in ("revenue", "refunds", "collection", "top-models", "mrr", "churn", "trials"):
        canvas = page.locator(f"#chart-{name}")
        await expect(canvas).to_have_attribute("data-rendered", "true")
        points = int(await canvas.get_attribute("data-points") or "0")
        assert points > 0, name
        link = page.locator(f"[data-analysis={name}] a.csv")
        assert "format=csv" in (await link.get_attribute("href") or "")
    await expect(page.locator("#an-currency")).to_have_value("USD")
    # Every kind of revenue the seed wrote has a dataset on the revenue chart.
    kinds = await page.evaluate(
        "Chart.getChart('chart-revenue').data.datasets.map((d) => d.label).sort()"
    )
    assert kinds == ["cam2cam", "membership", "private", "spy", "tip"]
    await page.select_option("#an-period", "week")
    await page.click("#analyses-filters button[type=submit]")
    await expect(page.locator("#an-status")).to_contain_text("by week")
    async with page.expect_download() as download_info:
        await page.click("[data-analysis=revenue] a.csv")
    download = await download_info.value
    assert download.suggested_filename.startswith("tipmeter-revenue-")
    saved = await download.path()
    with saved.open() as csv_file:
        assert csv_file.readline().startswith("bucket,currency,kind,amount_minor")
    await page.screenshot(path=screenshots / "console-analyses.png", full_page=True)


async def test_role_limits_in_the_page(
    console_pages: Pages, console_server: TipmeterProcess
) -> None:
    reader = await open_console(console_pages, console_server, "rio")
    await expect(reader.locator("#tabs button[data-section=analyses]")).to_be_visible()
    await expect(reader.locator("#tabs button[data-section=audit]")).to_have_count(0)
    await expect(reader.locator("[data-role=support]")).to_have_count(0)
    support = await open_console(console_pages, console_server, "sam")
    await expect(support.locator("#tabs button[data-section=audit]")).to_have_count(0)
    await expect(support.locator("#audit-card")).to_have_count(0)
    admin = await open_console(console_pages, console_server, "ada")
    await admin.click("#tabs button[data-section=audit]")
    await expect(admin.locator("#audit-rows tr").first).to_be_visible()
    await expect(admin.locator("#audit-rows")).to_contain_text("login")


@pytest.mark.screenshots
async def test_search_by_each_kind_of_number(
    console_pages: Pages, console_server: TipmeterProcess, screenshots: Path
) -> None:
    page = await open_console(console_pages, console_server, "rio", allow=REFUSED)
    await expect(page.locator("#live-revenue")).to_contain_text("$")
    await page.screenshot(path=screenshots / "console-live.png", full_page=True)
    await page.click("#tabs button[data-section=search]")
    # Settlement 51 of the seed is captured and refunded; settlement 203 is disputed.
    numbers = {
        "dispute id": ("seed-dispute-203", "tab-203"),
        "tab id": ("tab-51", "tab-51"),
        "capture id": ("seed-cap-seed-51", "tab-51"),
        "refund id": ("seed-refund-51", "tab-51"),
    }
    for kind, (number, tab_id) in numbers.items():
        await page.fill("#search-number", number)
        await page.click("#search-form button[type=submit]")
        status = page.locator("#search-status")
        await expect(status).to_contain_text(f"Found tab {tab_id} ", timeout=10_000)
        assert await status.get_attribute("data-found") == "true", kind
    await expect(page.locator("#search-refunds")).to_contain_text("seed-refund")
    # A read-only operator sees no action.
    await expect(page.locator("#refund-form")).to_have_count(0)
    await expect(page.locator("#clear-flag")).to_have_count(0)
    await page.fill("#search-number", "no-such-number")
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-status")).to_have_attribute("data-found", "false")


async def _settled_tab(server: TipmeterProcess, customer: str) -> str:
    from tests.server.test_console_support import settled_tab

    return str((await settled_tab(server, customer))["tab_id"])


@pytest.mark.screenshots
async def test_a_refund_from_the_console(
    console_pages: Pages, console_server: TipmeterProcess, screenshots: Path
) -> None:
    tab_id = await _settled_tab(console_server, "c-console-refund")
    agent = await open_console(console_pages, console_server, "sam")
    await agent.click("#tabs button[data-section=search]")
    await agent.fill("#search-number", tab_id)
    await agent.click("#search-form button[type=submit]")
    await expect(agent.locator("#search-status")).to_contain_text(f"Found tab {tab_id}")
    # Support sees the refund form but no override field (that is the admins').
    await expect(agent.locator("#refund-override")).to_have_count(0)
    await agent.fill("#refund-amount", "100")
    await agent.select_option("#refund-reason", "customer_request")
    await agent.click("#refund-form button[type=submit]")
    # Tips are refunded with the model's consent: the policy answers, as to the cam site.
    await expect(agent.locator("#action-status")).to_have_attribute(
        "data-outcome", "awaiting_consent"
    )
    admin = await open_console(console_pages, console_server, "ada")
    await admin.click("#tabs button[data-section=search]")
    await admin.fill("#search-number", tab_id)
    await admin.click("#search-form button[type=submit]")
    await expect(admin.locator("#search-status")).to_contain_text(f"Found tab {tab_id}")
    await admin.fill("#refund-amount", "50")
    await admin.select_option("#refund-reason", "goodwill")
    await admin.fill("#refund-override", "the stream froze for ten minutes")
    await admin.click("#refund-form button[type=submit]")
    await expect(admin.locator("#action-status")).to_have_attribute("data-outcome", "succeeded")
    await expect(admin.locator("#search-refunds tr")).to_have_count(2)
    await expect(admin.locator("#search-refunds")).to_contain_text("succeeded")
    await admin.screenshot(path=screenshots / "console-search.png", full_page=True)


@pytest.mark.screenshots
async def test_support_pauses_a_membership_from_the_console(
    console_pages: Pages, console_server: TipmeterProcess, screenshots: Path
) -> None:
    from tests.server.test_console_memberships import member

    sid = await member(console_server, "c-console-member")
    reader = await open_console(console_pages, console_server, "rio", allow=REFUSED)
    await reader.click("#tabs button[data-section=search]")
    await reader.fill("#search-number", "c-console-member")
    await reader.click("#search-form button[type=submit]")
    row = reader.locator(f"#memberships-rows tr[data-subscription='{sid}']")
    await expect(row).to_contain_text("active")
    await expect(row.locator("button")).to_have_count(0)  # read-only: no action
    agent = await open_console(console_pages, console_server, "sam", allow=REFUSED)
    await agent.click("#tabs button[data-section=search]")
    await agent.fill("#search-number", "c-console-member")
    await agent.click("#search-form button[type=submit]")
    await expect(agent.locator("#search-status")).to_contain_text("1 membership")
    row = agent.locator(f"#memberships-rows tr[data-subscription='{sid}']")
    await row.locator("button[data-action=pause]").click()
    await expect(agent.locator("#membership-status")).to_have_attribute(
        "data-outcome", "pause:active"
    )
    # The paid month is kept: the row says when the pause takes effect, and offers a resume.
    await expect(row).to_contain_text("pauses on")
    await expect(row.locator("button[data-action=resume]")).to_be_visible()
    await expect(row.locator("button[data-action=pause]")).to_have_count(0)
    await agent.screenshot(path=screenshots / "console-memberships.png", full_page=True)
