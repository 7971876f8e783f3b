"""The menu in a real headless Chromium against a real ``tipmeter serve`` (issue 17,
docs/purchases.md): the model fills her menu from her console, a viewer buys from it, the model
declines one request and fulfils another, and the viewer's remaining cap, purchases and
statement follow; a site unlock shows in the viewer's page with its countdown; the broadcast
overlay shows each purchase like a tip; a request declined after the tab froze is refunded by
the server itself, and the viewer's page shows it."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from server.catalog_refunds import refund_id_of
from tests.pages.conftest import Pages, Site, unique
from tests.pages.flows import (
    minor,
    open_model_console,
    open_overlay,
    open_tab,
    open_viewer,
    overlay_link,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def add_item(
    model: Page, item_id: str, name: str, price: str, *, kind: str = "request"
) -> None:
    """The model adds an item to her menu from her console's form."""
    await model.fill("#item-id", item_id)
    await model.fill("#item-name", name)
    await model.select_option("#item-kind", kind)
    await model.fill("#item-price", price)
    await model.click("#item-save")
    await expect(model.locator("#item-status")).to_have_text(f"{name} saved.")
    await expect(model.locator(f"#menu-list li[data-item-id='{item_id}']")).to_be_visible()


async def buy(viewer: Page, item_id: str, message: str = "") -> None:
    """The viewer buys ``item_id`` from the menu and waits for its answer."""
    before = await viewer.locator("#purchase-log li").count()
    await viewer.fill("#menu-message", message)
    await viewer.click(f"#menu-items button[data-item-id='{item_id}']")
    await expect(viewer.locator("#purchase-log li")).to_have_count(before + 1)


async def test_a_viewer_buys_from_the_menu_and_the_model_answers(pages: Pages, site: Site) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    await add_item(model, "dance", "Dance", "3.00")
    await add_item(model, "song", "Song", "2.00")
    await expect(model.locator("#menu-count")).to_have_text(re.compile(r"^2 of \d+$"))
    overlay = await open_overlay(pages, await overlay_link(model))

    viewer = await open_viewer(pages, site.base, customer, room, name="Bob")
    tab_id = await open_tab(viewer, "20.00")
    menu = viewer.locator("#menu-items li")
    # Her two requests and the site's unlock, priced in the tab's currency.
    await expect(menu).to_have_count(3)
    await expect(viewer.locator("#menu-items li[data-item-id='dance']")).to_contain_text("$3.00")
    await expect(viewer.locator("#menu-items li[data-item-id='site.hd']")).to_contain_text("$1.50")

    await buy(viewer, "dance", "the slow one")
    await buy(viewer, "song")
    await buy(viewer, "site.hd")
    await expect(viewer.locator("#accrued")).to_have_attribute("data-minor", "650")
    await expect(viewer.locator("#remaining")).to_have_text("$13.50")
    purchases = viewer.locator("#purchase-log li")
    await expect(purchases.filter(has_text="Dance")).to_have_attribute("data-state", "pending")
    # The unlock is granted at once and counts down from its hour.
    unlock = purchases.filter(has_text="HD for this show")
    await expect(unlock).to_have_attribute("data-state", "granted")
    await expect(unlock).to_contain_text(re.compile(r"unlocked \(\d+:\d\d left\)"))

    # The broadcast overlay shows each purchase like a tip, its message naming the item.
    alerts = overlay.locator("#alert-log li")
    await expect(alerts).to_have_count(3)
    await expect(alerts.nth(0)).to_have_text("Bob tipped $3.00: Dance: the slow one")
    await expect(alerts.nth(1)).to_have_text("Bob tipped $2.00: Song")
    await expect(alerts.nth(2)).to_have_text("Bob tipped $1.50: HD for this show")

    # Her console's feed lists each purchase as it comes.
    feed = model.locator("#feed li[data-event='purchase']")
    await expect(feed).to_have_count(3)
    await expect(feed.nth(2)).to_contain_text("Bob asked for Dance “the slow one”")
    await expect(feed.nth(0)).to_contain_text("Bob unlocked HD for this show")

    # The model's queue holds the two requests, with the viewer's name and message.
    queue = model.locator("#request-queue li")
    await expect(queue).to_have_count(2)
    dance = queue.filter(has_text="Dance for Bob")
    await expect(dance).to_contain_text("“the slow one”")
    await queue.filter(has_text="Song").locator("button.decline").click()
    await expect(model.locator("#queue-status")).to_have_text(
        "Song: declined; the viewer is not charged."
    )
    await dance.locator("button.done").click()
    await expect(model.locator("#queue-status")).to_have_text("Dance: done.")
    await expect(queue).to_have_count(0)

    # The viewer sees each answer live; the declined request freed its part of the cap.
    song = purchases.filter(has_text="Song")
    await expect(song).to_have_attribute("data-state", "voided")
    await expect(song).to_contain_text("declined: not charged")
    await expect(purchases.filter(has_text="Dance")).to_have_attribute("data-state", "fulfilled")
    await expect(viewer.locator("#accrued")).to_have_attribute("data-minor", "450")
    await expect(viewer.locator("#remaining")).to_have_text("$15.50")

    # The statement lists each purchase as its line, the declined one at 0; one charge of 4.50.
    await viewer.click("#settle-button")
    statement = viewer.locator("#statement")
    await expect(statement).to_have_attribute("data-outcome", "captured")
    lines = viewer.locator("#statement-lines tbody tr[data-kind='purchase']")
    await expect(lines).to_have_count(3)
    await expect(lines.filter(has_text="Song")).to_have_attribute("data-amount-minor", "0")
    await expect(lines.filter(has_text="Song")).to_contain_text("declined, $2.00 not charged")
    await expect(lines.filter(has_text="Dance (fulfilled)")).to_have_attribute(
        "data-amount-minor", "300"
    )
    assert await minor(viewer, "#statement-captured") == 450
    settled = await site.settled_statement(customer, tab_id)
    assert settled["captured_minor"] == 450


async def test_a_request_declined_after_the_tab_froze_is_refunded_by_itself(
    pages: Pages, site: Site
) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    await add_item(model, "wave", "Wave", "1.00")
    viewer = await open_viewer(pages, site.base, customer, room, name="Bob")
    tab_id = await open_tab(viewer, "10.00")
    await expect(viewer.locator("#menu-items li")).to_have_count(2)  # and the site's unlock
    await buy(viewer, "wave")
    queue = model.locator("#request-queue li")
    await expect(queue).to_have_count(1)
    wave = viewer.locator("#purchase-log li").filter(has_text="Wave")
    purchase_id = await wave.get_attribute("data-purchase-id")
    assert purchase_id is not None

    # The viewer ends the tab before the model answers: the capture includes the request.
    await viewer.click("#settle-button")
    await expect(viewer.locator("#statement")).to_have_attribute("data-outcome", "captured")
    assert (await site.settled_statement(customer, tab_id))["captured_minor"] == 100

    # She declines it now: it leaves her queue, and the server refunds it through the refunds
    # flow; the viewer's page shows it refunded, live.
    await expect(queue).to_have_count(1)
    await queue.locator("button.decline").click()
    await expect(model.locator("#queue-status")).to_have_text(
        "The viewer's tab is settling: the request will be refunded after the charge."
    )
    await expect(queue).to_have_count(0)
    await expect(wave).to_have_attribute("data-state", "refunded")
    await expect(wave).to_contain_text("refunded")
    async with site.api() as http:
        found = (await http.get(f"/v1/customers/{customer}/purchases/{purchase_id}")).json()
        refund = (await http.get(f"/v1/refunds/{refund_id_of(customer, purchase_id)}")).json()
    assert found["state"] == "refunded"
    assert (refund["status"], refund["amount_minor"]) == ("succeeded", 100)
