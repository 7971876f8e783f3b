"""The pay-link pages in a real headless Chromium against a real ``tipmeter serve`` process: a
declined capture becomes a collection case; its link shows what is owed, the sandbox's hosted
card page declines a card with the reason in words, then takes another; and the link past its
expiry, its opens or its attempts says so plainly. Screenshots of each page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.pages.conftest import SETTLE_TIMEOUT_S, Pages, Site, unique
from tests.pages.flows import open_tab, open_viewer, tip_preset
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A link that can no longer be used answers 410, which the browser reports on the console.
GONE: tuple[re.Pattern[str], ...] = (
    re.compile(r"Failed to load resource: the server responded with a status of 410"),
)


async def _failed_case(pages: Pages, site: Site) -> str:
    """A tab whose capture is declined, and the case collection opened for it; its id."""
    room, customer = unique("room"), unique("viewer")
    viewer = await open_viewer(pages, site.base, customer, room)
    tab_id = await open_tab(viewer, "20.00", card="tok_capture_decline_insufficient_funds")
    await tip_preset(viewer, 500)
    await viewer.click("#settle-button")
    await expect(viewer.locator("#statement")).to_have_attribute("data-state", "failed")
    case: dict[str, Any] = {}
    async with site.api() as http:

        async def opened() -> bool:
            # The ledger write follows the Redis outcome: sweep until the case is there.
            swept = await http.post("/v1/collection/sweep")
            assert swept.status_code == 200, swept.text
            found = await http.get(f"/v1/customers/{customer}/tabs/{tab_id}/collection")
            assert found.status_code in (200, 404), found.text
            if found.status_code == 200:
                case.update(found.json())
            return bool(case)

        await eventually(opened, timeout_s=SETTLE_TIMEOUT_S, what="a collection case opens")
    assert (case["amount_minor"], case["decline_reason"]) == (500, "insufficient_funds")
    return str(case["case_id"])


async def _link(site: Site, case_id: str, **limits: Any) -> str:
    async with site.api() as http:
        made = await http.post(f"/v1/collection/cases/{case_id}/links", json=limits)
    assert made.status_code == 201, made.text
    url = str(made.json()["url"])
    if "phone" in limits:
        # Sent at once (the server's default notifier logs the envelope, never the link).
        assert made.json()["sent"] == [{"channel": "sms", "code": "sent"}]
    assert "/pay/" in url
    return url


async def _case(site: Site, case_id: str) -> dict[str, Any]:
    async with site.api() as http:
        found = await http.get(f"/v1/collection/cases/{case_id}")
    assert found.status_code == 200, found.text
    case: dict[str, Any] = found.json()
    return case


async def _pay_with(page: Page, card: str) -> None:
    await page.select_option("#card", card)
    await page.click("#submit")


@pytest.mark.screenshots
async def test_a_link_is_paid_after_a_declined_card(
    pages: Pages, site: Site, screenshots: Path
) -> None:
    case_id = await _failed_case(pages, site)
    url = await _link(site, case_id)
    page = await pages.open(url, name="paylink")
    await expect(page.locator("#owed")).to_have_text("5.00 USD")
    await page.screenshot(path=screenshots / "paylink-statement.png")
    await page.click("#pay")
    await expect(page.locator("main")).to_have_attribute("data-page", "card")
    await page.screenshot(path=screenshots / "paylink-card.png")
    await _pay_with(page, "tok_decline_stolen_card")
    await expect(page.locator("#reason")).to_have_text("card reported stolen")
    await page.screenshot(path=screenshots / "paylink-declined.png")
    await page.click("#retry")
    await _pay_with(page, "tok_visa")
    await expect(page.locator("h1")).to_have_text("Paid")
    await page.screenshot(path=screenshots / "paylink-paid.png")

    case = await _case(site, case_id)
    assert case["state"] == "paid"
    assert [(a["source"], a["status"]) for a in case["attempts"]] == [
        ("link", "declined"),
        ("link", "approved"),
    ]
    assert case["attempts"][0]["reason_words"] == "card_reported_stolen"


async def _open_link(pages: Pages, site: Site, name: str, **limits: Any) -> tuple[str, str, Page]:
    """A failed case's link with ``limits``, opened: the case id, the link and its page."""
    case_id = await _failed_case(pages, site)
    url = await _link(site, case_id, **limits)
    return case_id, url, await pages.open(url, name=name, allow=GONE)


async def _says_used_up(page: Page, screenshot: Path) -> None:
    await expect(page.locator("#message")).to_have_text("This link can no longer be used.")
    await page.screenshot(path=screenshot)


async def test_an_expired_link_says_so(pages: Pages, site: Site, screenshots: Path) -> None:
    case_id = await _failed_case(pages, site)
    url = await _link(site, case_id, expiry_s=1, phone="+37060012345", language="de")
    page = await pages.open(url, name="expired", allow=GONE)

    async def expired() -> bool:
        # The link lives one second: reload until the server says it expired.
        if await page.locator("#message").count():
            return True
        await page.reload()
        return False

    await eventually(expired, interval_s=0.2, what="the link expires")
    await expect(page.locator("#message")).to_have_text("Dieser Link ist abgelaufen.")
    await page.screenshot(path=screenshots / "paylink-expired.png")


async def test_a_link_past_its_opens_can_no_longer_be_used(
    pages: Pages, site: Site, screenshots: Path
) -> None:
    *_, page = await _open_link(pages, site, "opens", opens_max=1)
    await expect(page.locator("#owed")).to_have_text("5.00 USD")
    await page.reload()
    await _says_used_up(page, screenshots / "paylink-opens-used.png")


async def test_a_link_past_its_attempts_can_no_longer_be_used(
    pages: Pages, site: Site, screenshots: Path
) -> None:
    case_id, url, page = await _open_link(pages, site, "attempts", failed_max=1)
    await page.click("#pay")
    await _pay_with(page, "tok_decline_expired_card")
    await expect(page.locator("#reason")).to_have_text("card expired")
    await expect(page.locator("#retry")).to_have_count(0)
    await page.goto(url)
    await _says_used_up(page, screenshots / "paylink-attempts-used.png")
    case = await _case(site, case_id)
    assert case["state"] == "link_sent"
    assert [a["status"] for a in case["attempts"]] == ["declined"]


async def test_a_batch_upload_reports_every_row_and_creates_nothing_twice(site: Site) -> None:
    body = (
        "customer,amount_minor,currency,phone,email,language\n"
        f"{unique('batch')},1250,EUR,+37060012345,,lt\n"
        f"{unique('batch')},0,EUR,,x@example.com,de\n"
        f"{unique('batch')},700,USD,,y@example.com,it\n"
    ).encode()
    headers = {"content-type": "text/csv", "idempotency-key": unique("list")}
    async with site.api() as http:
        first = await http.post("/v1/collection/batches", content=body, headers=headers)
        second = await http.post("/v1/collection/batches", content=body, headers=headers)
        garbage = await http.post(
            "/v1/collection/batches",
            content=b"nope",
            headers={**headers, "content-type": "application/json"},
        )
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["created"], report["refused"], report["duplicate"]) == (2, 1, 0)
    rows = report["rows"]
    assert [row["status"] for row in rows] == ["created", "refused", "created"]
    assert rows[0]["sent"] == {"channel": "sms", "code": "sent"}
    assert rows[2]["sent"] == {"channel": "email", "code": "sent"}
    assert rows[1]["errors"] == ["amount_minor must be an integer from 1 to 10000000"]
    again = second.json()
    assert (again["created"], again["duplicate"], again["refused"]) == (0, 2, 1)
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "malformed_batch"
    case = await _case(site, rows[0]["case_id"])
    assert (case["state"], case["amount_minor"], case["currency"]) == ("link_sent", 1250, "EUR")
