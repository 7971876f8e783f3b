"""Refunds on the pages, in a real headless Chromium against a real ``tipmeter serve``: a
customer asks for a refund from her statement (a reason, the lines, a screenshot checked by its
content); the request reaches the model's console live over the WebSocket and waits in her list;
she accepts one and declines another; the viewer's statement shows each outcome."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import FilePayload, expect

from tests.pages.conftest import Pages, Site, unique
from tests.pages.flows import open_model_console, open_tab, open_viewer, tip_preset

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: The browser reports the refused attachment's 400 answer on its console.
REFUSED: tuple[re.Pattern[str], ...] = (
    re.compile(r"Failed to load resource: the server responded with a status of 400"),
)
#: The smallest PNG: a 1×1 transparent pixel.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


async def test_a_customers_request_waits_on_the_console_and_her_answer_reaches_the_statement(
    pages: Pages, site: Site
) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    await expect(model.locator("#refunds-empty")).to_be_visible()
    viewer = await open_viewer(pages, site.base, customer, room, allow=REFUSED)
    tab_id = await open_tab(viewer, "20.00")
    await tip_preset(viewer, 500)
    await tip_preset(viewer, 100)
    await viewer.click("#settle-button")
    statement = viewer.locator("#statement")
    await expect(statement).to_have_attribute("data-outcome", "captured")

    # Her statement offers each charge; a tip needs the model's consent by the site's policy.
    await expect(viewer.locator("#refunds-part")).to_be_visible()
    await expect(viewer.locator("#refund-list-empty")).to_be_visible()
    await viewer.click("#refund-ask summary")
    boxes = viewer.locator("#refund-lines input[type=checkbox]")
    await expect(boxes).to_have_count(2)
    await boxes.nth(0).check()
    await viewer.select_option("#refund-reason", "technical_problem")
    await viewer.fill("#refund-note", "The stream froze <b>right after</b> I tipped")
    # A text file named like a picture is refused by its content, whatever its name says.
    await viewer.set_input_files(
        "#refund-files",
        [FilePayload(name="receipt.png", mimeType="image/png", buffer=b"not a picture")],
    )
    await viewer.click("#refund-send")
    await expect(viewer.locator("#refund-status")).to_have_text(re.compile("cannot be attached"))
    await expect(viewer.locator("#refund-list tbody tr")).to_have_count(0)
    await viewer.set_input_files(
        "#refund-files", [FilePayload(name="screenshot.png", mimeType="image/png", buffer=PNG)]
    )
    await viewer.click("#refund-send")
    await expect(viewer.locator("#refund-status")).to_have_text("Your request was sent.")
    first = viewer.locator("#refund-list tbody tr").first
    await expect(first).to_have_attribute("data-status", "awaiting_consent")
    await expect(first).to_contain_text("waiting for the model")
    refund_id = await first.get_attribute("data-refund-id")
    assert refund_id is not None

    # It reached the model's console live, and waits in her list with the customer's words.
    row = model.locator(f"#refunds tbody tr[data-refund-id='{refund_id}']")
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("a technical problem: “The stream froze <b>right after</b>")
    await expect(model.locator("#refunds-empty")).to_be_hidden()
    amount = await row.locator("td.num").get_attribute("data-minor")
    await row.locator("button[data-answer='accept']").click()
    await expect(model.locator("#refunds-status")).to_have_text("Refund accepted.")
    await expect(row).to_have_count(0)
    await expect(model.locator("#refunds-empty")).to_be_visible()

    # The viewer's statement shows the refund done.
    await expect(first).to_have_attribute("data-status", "succeeded")
    await expect(first).to_contain_text("refunded")
    await expect(first.locator("td.num")).to_have_attribute("data-minor", amount or "")

    # Who decided, and when, is recorded; the attachment was kept, checked by its content.
    async with site.api() as http:
        refund = (await http.get(f"/v1/refunds/{refund_id}")).json()
        view = (await http.get(f"/v1/customers/{customer}/tabs/{tab_id}/refunds")).json()
    assert (refund["status"], refund["decided_by"], refund["origin"]) == (
        "succeeded",
        f"model:{room}",
        "customer",
    )
    assert refund["decided_at"]
    assert [(c["room"], c["answer"]) for c in refund["consents"]] == [(room, "accepted")]
    (asked,) = view["refunds"]
    assert [(a["n"], a["content_type"]) for a in asked["attachments"]] == [(1, "image/png")]

    # A second request, on the other tip: she declines it, and the statement says so.
    await viewer.locator("#refund-lines input[type=checkbox]").first.check()
    await viewer.click("#refund-send")
    second = viewer.locator("#refund-list tbody tr").nth(1)
    await expect(second).to_have_attribute("data-status", "awaiting_consent")
    other = model.locator("#refunds tbody tr")
    await expect(other).to_have_count(1)
    await other.locator("button[data-answer='decline']").click()
    await expect(model.locator("#refunds-status")).to_have_text("Refund declined.")
    await expect(second).to_have_attribute("data-status", "declined")
