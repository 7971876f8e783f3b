"""What a person does on the pages, as steps the browser tests share."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlencode

from playwright.async_api import Page, expect

from tests.pages.conftest import Pages


async def open_model_console(pages: Pages, base: str, room: str) -> Page:
    """The model console of ``room``, connected and following the room."""
    model = await pages.open(f"{base}/pages/model.html?room={room}", name="model")
    await expect(model.locator("body")).to_have_attribute("data-ready", "true")
    await expect(model.locator("#connection")).to_have_attribute("data-state", "open")
    return model


async def set_private_rate(model: Page, per_minute: str) -> None:
    """The model sets her private show's price (``per_minute`` as she types it)."""
    await model.fill("#rate-private", per_minute)
    await model.click("#rates-save")
    await expect(model.locator("#rates-status")).to_have_text(re.compile("Prices saved"))


async def overlay_link(model: Page) -> str:
    """A new overlay link, made in the model console."""
    await model.click("#overlay-create")
    link = model.locator("#overlay-link")
    await expect(link).to_have_value(re.compile(r"/pages/overlay\.html#room="))
    return await link.input_value()


async def open_overlay(pages: Pages, link: str, *, seconds: int = 2) -> Page:
    """The broadcast overlay at ``link``, live (alerts stay ``seconds``)."""
    overlay = await pages.open(f"{link}&seconds={seconds}", name="overlay", viewport=(1280, 720))
    await expect(overlay.locator("body")).to_have_attribute("data-ready", "true")
    return overlay


async def open_viewer(
    pages: Pages,
    base: str,
    customer: str,
    room: str,
    name: str = "Bob",
    *,
    allow: Sequence[re.Pattern[str]] = (),
) -> Page:
    """The viewer page of ``customer`` in ``room``, connected (``allow``: see Pages.open)."""
    query = urlencode({"customer": customer, "room": room, "name": name})
    viewer = await pages.open(f"{base}/pages/viewer.html?{query}", name="viewer", allow=allow)
    await expect(viewer.locator("#connection")).to_have_attribute("data-state", "open")
    return viewer


async def open_tab(viewer: Page, cap: str, card: str = "tok_visa") -> str:
    """Open a tab from the viewer page's form; return its id once the meter shows it."""
    await expect(viewer.locator("#open-tab")).to_be_visible()
    await viewer.fill("#cap-input", cap)
    await viewer.select_option("#card-select", card)
    await viewer.click("#open-button")
    await expect(viewer.locator("#meter-card")).to_be_visible()
    tab_id = await viewer.evaluate("() => window.tipmeter.client.tab.tab_id")
    assert isinstance(tab_id, str)
    return tab_id


async def tip_preset(viewer: Page, amount_minor: int) -> None:
    """Click a one-click tip button and wait for its answer."""
    before = await viewer.locator("#tip-log li").count()
    await viewer.click(f"#tip-buttons button[data-amount-minor='{amount_minor}']")
    await expect(viewer.locator("#tip-log li")).to_have_count(before + 1)
    await expect(viewer.locator("#tip-log li").first).to_have_attribute(
        "data-status", re.compile("applied|duplicate")
    )


async def minor(page: Page, selector: str) -> int:
    """The integer amount a page shows at ``selector`` (its ``data-minor``, never its text)."""
    value = await page.get_attribute(selector, "data-minor")
    assert value is not None, f"{selector} has no amount"
    assert value.isdigit(), f"{selector} shows {value!r}, not an amount"
    return int(value)
