"""The web pages in a real headless Chromium against a real ``tipmeter serve`` process (with its
settlement worker): a viewer tips and the model console and the overlay show it; a private show
runs to the cap, the tab settles and the statement adds up to the one charge; a declined
capture says why; a network that drops mid-tip never tips twice; the overlay resumes without
repeating or missing an alert. The tests marked ``screenshots`` take the README's screenshots
(kept in docs/screenshots/ only by `make screenshots`; see the ``screenshots`` fixture)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.pages.conftest import NETWORK_FAILURES, Pages, Site, unique
from tests.pages.flows import (
    minor,
    open_model_console,
    open_overlay,
    open_tab,
    open_viewer,
    overlay_link,
    set_private_rate,
    tip_preset,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A declined authorization is an HTTP error the browser itself reports on the console.
DECLINED: tuple[re.Pattern[str], ...] = (
    re.compile(r"Failed to load resource: the server responded with a status of 402"),
)

#: How long a page may take to reconnect after the server restarted.
RECONNECT_TIMEOUT_MS = 60_000


@pytest.mark.screenshots
async def test_a_tip_shows_on_the_model_console_and_the_overlay(
    pages: Pages, site: Site, screenshots: Path
) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    overlay = await open_overlay(pages, await overlay_link(model), seconds=30)
    viewer = await open_viewer(pages, site.base, customer, room, name="Bob")
    tab_id = await open_tab(viewer, "50.00")
    assert await minor(viewer, "#cap") == 5_000

    await viewer.fill("#tip-amount", "12.50")
    await viewer.fill("#tip-message", "hi there")
    await viewer.click("#tip-send")
    await expect(viewer.locator("#tip-log li").first).to_have_attribute("data-status", "applied")
    await tip_preset(viewer, 500)
    await expect(viewer.locator("#accrued")).to_have_attribute("data-minor", "1750")
    await expect(viewer.locator("#remaining")).to_have_text("$32.50")

    # The model sees both tips, newest first, and her 60 % share of each in her earnings.
    feed = model.locator("#feed li[data-event='tip']")
    await expect(feed).to_have_count(2)
    await expect(feed.nth(1)).to_contain_text("Bob tipped “hi there”")
    await expect(feed.nth(1)).to_contain_text("$12.50")
    await expect(feed.nth(0)).to_contain_text("$5.00")
    await expect(model.locator("#earnings li[data-currency='USD']")).to_have_attribute(
        "data-minor", str(750 + 300)
    )

    # The overlay shows one animated alert per tip, in order.
    alerts = overlay.locator("#alert-log li")
    await expect(alerts).to_have_count(2)
    await expect(alerts.nth(0)).to_have_text("Bob tipped $12.50: hi there")
    await expect(alerts.nth(1)).to_have_text("Bob tipped $5.00")
    await expect(overlay.locator("#alerts .alert")).to_have_count(2)
    transparent = await overlay.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert transparent == "rgba(0, 0, 0, 0)"

    # What the pages showed is what the money core holds.
    tab = await site.tab(customer, tab_id)
    assert [(line["kind"], line["amount_minor"]) for line in tab["lines"]] == [
        ("tip", 1_250),
        ("tip", 500),
    ]
    assert tab["accrued_minor"] == 1_750

    await overlay.wait_for_timeout(700)  # the entry animation
    await overlay.screenshot(path=screenshots / "overlay.png", omit_background=True)


@pytest.mark.screenshots
async def test_a_private_show_runs_to_the_cap_and_the_statement_adds_up(
    pages: Pages, site: Site, screenshots: Path
) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    await set_private_rate(model, "60.00")  # a dollar a second: a $5 cap lasts seconds
    viewer = await open_viewer(pages, site.base, customer, room)
    tab_id = await open_tab(viewer, "5.00")
    await tip_preset(viewer, 100)

    await viewer.click("#show-start")
    await expect(viewer.locator("#show-status")).to_contain_text("$60.00 a minute")
    await expect(model.locator("#sessions tbody tr")).to_have_count(1)
    # Four seconds are left at that rate: the low-credit warning brings up the raise prompt.
    await expect(viewer.locator("#raise-cap")).to_be_visible()
    await expect(viewer.locator("#raise-text")).to_contain_text("left at the current rate")
    await expect(viewer.locator("#seconds-left")).to_have_text(re.compile(r"^\d s$"))
    await viewer.screenshot(path=screenshots / "viewer-show.png", full_page=True)
    await model.screenshot(path=screenshots / "model-console.png", full_page=True)

    end = viewer.locator("#session-end")
    await expect(end).to_have_attribute("data-reason", "cap_reached", timeout=15_000)
    await expect(end).to_contain_text("your cap was reached")
    await expect(viewer.locator("#raise-cap")).to_be_hidden()
    await expect(model.locator("#sessions tbody tr")).to_have_count(0)
    await expect(model.locator("#feed li[data-event='session_ended']")).to_contain_text(
        "the viewer's cap was reached"
    )
    # The cap is spent to the cent: $1 of tip, then four seconds at $1.
    await expect(viewer.locator("#accrued")).to_have_attribute("data-minor", "500")
    await expect(viewer.locator("#remaining")).to_have_attribute("data-minor", "0")

    await viewer.click("#settle-button")
    statement = viewer.locator("#statement")
    await expect(statement).to_be_visible()
    await expect(statement).to_have_attribute("data-tab-id", tab_id)
    # The settlement worker takes the one charge; the page shows it, with its capture id.
    await expect(statement).to_have_attribute("data-state", "settled")
    await expect(statement).to_have_attribute("data-outcome", "captured")
    await expect(viewer.locator("#statement-state")).to_have_text("settled")
    await expect(viewer.locator("#statement-outcome")).to_have_text(
        "Paid: one charge of $5.00 was taken from your card."
    )
    await expect(viewer.locator("#tab-state")).to_have_text("settled")
    rows = viewer.locator("#statement-lines tbody tr")
    await expect(rows).to_have_count(2)
    shown = [int(v) for v in await rows.evaluate_all("rs => rs.map(r => r.dataset.amountMinor)")]
    assert shown == [100, 400]
    assert await minor(viewer, "#statement-sum") == 500
    assert await minor(viewer, "#statement-total") == 500
    await expect(viewer.locator("#statement-lines tbody tr").nth(1)).to_contain_text(
        "Show: 4 s at $60.00 a minute"
    )
    await expect(viewer.locator(f"#statement-models tr[data-room='{room}']")).to_contain_text(
        "$5.00"
    )
    assert await minor(viewer, "#statement-captured") == 500
    await expect(viewer.locator("#statement-note")).to_have_text(
        "$5.00 was authorized and charged in full."
    )

    # The statement the page shows is the HTTP API's: settled, captured in full, and it adds up.
    api = await site.settled_statement(customer, tab_id)
    assert (api["state"], api["outcome"], api["freeze_reason"]) == (
        "settled",
        "captured",
        "merchant",
    )
    assert api["captured_minor"] == api["total_minor"] == 500
    await expect(viewer.locator("#statement-capture-id")).to_have_text(api["capture_id"])
    assert [line["amount_minor"] for line in api["lines"]] == shown
    assert sum(line["amount_minor"] for line in api["lines"]) == api["total_minor"] == 500
    (by_model,) = api["by_model"]
    assert by_model["room"] == room
    assert (by_model["tips_minor"], by_model["sessions_minor"]) == (100, 400)
    assert by_model["session_seconds"] == 4
    assert by_model["share_minor"] + api["platform_minor"] == api["total_minor"]
    # Support finds the payment from the capture id the page shows.
    assert await site.capture(api["capture_id"]) == api
    await viewer.screenshot(path=screenshots / "viewer-statement.png", full_page=True)

    # A settled tab takes no more tips; a new tab can be opened from the statement.
    await expect(viewer.locator("#tip-card")).to_be_hidden()
    await viewer.click("#new-tab")
    await open_tab(viewer, "20.00")
    await expect(viewer.locator("#statement")).to_be_hidden()
    await expect(viewer.locator("#cap")).to_have_attribute("data-minor", "2000")


async def test_the_raise_prompt_raises_the_cap_and_the_model_stops_the_show(
    pages: Pages, site: Site
) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    await set_private_rate(model, "60.00")
    viewer = await open_viewer(pages, site.base, customer, room)
    tab_id = await open_tab(viewer, "2.00")
    await viewer.click("#show-start")
    prompt = viewer.locator("#raise-cap")
    await expect(prompt).to_be_visible()
    await prompt.get_by_role("button", name="+ $5.00").click()
    await expect(prompt).to_be_hidden()
    await expect(viewer.locator("#cap")).to_have_attribute("data-minor", "700")
    await expect(viewer.locator("#tab-status")).to_have_text("Cap raised to $7.00.")

    # The model ends the show from her console.
    row = model.locator("#sessions tbody tr")
    await expect(row).to_have_count(1)
    await row.get_by_role("button", name=re.compile("Stop show")).click()
    end = viewer.locator("#session-end")
    await expect(end).to_have_attribute("data-reason", "stopped")
    await expect(model.locator("#sessions tbody tr")).to_have_count(0)
    tab = await site.tab(customer, tab_id)
    assert tab["cap_minor"] == 700
    (line,) = tab["lines"]
    assert line["kind"] == "session"
    assert line["amount_minor"] == 100 * line["seconds"] == tab["accrued_minor"]


async def test_a_declined_card_is_explained_and_opens_no_tab(pages: Pages, site: Site) -> None:
    room, customer = unique("room"), unique("viewer")
    viewer = await open_viewer(pages, site.base, customer, room, allow=DECLINED)
    await viewer.fill("#cap-input", "25")
    await viewer.select_option("#card-select", "tok_decline_insufficient_funds")
    await viewer.click("#open-button")
    await expect(viewer.locator("#open-status")).to_have_text(
        "The card was declined: insufficient funds."
    )
    await expect(viewer.locator("#meter-card")).to_be_hidden()
    await viewer.fill("#cap-input", "0.50")
    await viewer.select_option("#card-select", "tok_visa")
    await viewer.click("#open-button")
    await expect(viewer.locator("#open-status")).to_have_text(
        "Enter a cap between $1.00 and $10,000.00."
    )
    await open_tab(viewer, "25")
    await expect(viewer.locator("#cap")).to_have_text("$25.00")


async def test_a_declined_capture_says_why_and_charges_nothing(pages: Pages, site: Site) -> None:
    room, customer = unique("room"), unique("viewer")
    viewer = await open_viewer(pages, site.base, customer, room)
    # This sandbox card approves the hold and declines its capture at settlement.
    tab_id = await open_tab(viewer, "20.00", card="tok_capture_decline_insufficient_funds")
    await tip_preset(viewer, 500)
    await viewer.click("#settle-button")

    statement = viewer.locator("#statement")
    await expect(statement).to_have_attribute("data-state", "failed")
    await expect(statement).to_have_attribute("data-outcome", "declined")
    await expect(viewer.locator("#statement-state")).to_have_text("payment declined")
    await expect(viewer.locator("#statement-outcome")).to_have_text(
        "Payment declined: insufficient funds. Nothing was charged."
    )
    await expect(viewer.locator("#statement-capture-id")).to_have_text("–")
    assert await minor(viewer, "#statement-captured") == 0
    assert await minor(viewer, "#statement-total") == 500
    await expect(viewer.locator("#tab-state")).to_have_text("failed")
    await expect(viewer.locator("#tip-card")).to_be_hidden()

    api = await site.settled_statement(customer, tab_id)
    assert (api["state"], api["outcome"], api["decline_reason"]) == (
        "failed",
        "declined",
        "insufficient_funds",
    )
    assert (api["total_minor"], api["captured_minor"], api["capture_id"]) == (500, 0, "")


async def test_a_tab_the_cam_site_settles_shows_its_outcome_as_announced(
    pages: Pages, site: Site
) -> None:
    room, customer = unique("room"), unique("viewer")
    viewer = await open_viewer(pages, site.base, customer, room)
    tab_id = await open_tab(viewer, "30.00")
    await tip_preset(viewer, 1_000)
    # The cam site's backend settles the tab; the viewer clicks nothing. The page learns it from
    # the server's `tab` messages and reads the statement at once, long before its fallback
    # read (every 5 s) would.
    async with site.api() as http:
        queued = await http.post(f"/v1/customers/{customer}/tabs/{tab_id}/settle")
    assert queued.status_code == 202, queued.text
    statement = viewer.locator("#statement")
    await expect(statement).to_have_attribute("data-outcome", "captured")
    await expect(statement).to_have_attribute("data-read-on", "tab")
    await expect(viewer.locator("#tab-state")).to_have_text("settled")
    await expect(viewer.locator("#tip-card")).to_be_hidden()
    api = await site.settled_statement(customer, tab_id)
    assert api["captured_minor"] == 1_000
    await expect(viewer.locator("#statement-capture-id")).to_have_text(api["capture_id"])


async def test_a_dropped_network_resumes_without_a_double_tip(pages: Pages, site: Site) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    # The viewer's page, and so its WebSocket, goes through the proxy.
    viewer = await open_viewer(pages, site.proxied, customer, room, allow=NETWORK_FAILURES)
    tab_id = await open_tab(viewer, "50.00")

    # The tip reaches the server and is applied, but its answer never comes back …
    site.proxy.swallow_downstream = True
    await viewer.click("#tip-buttons button[data-amount-minor='500']")

    async def applied() -> bool:
        return bool((await site.tab(customer, tab_id))["accrued_minor"] == 500)

    await eventually(applied, what="the tip is applied")
    pending = viewer.locator("#tip-log li").first
    await expect(pending).to_have_attribute("data-status", "pending")
    tip_id = await pending.get_attribute("data-tip-id")
    # … then the connection dies. The client reconnects with a new ticket and sends the tip
    # again with the same id: the server answers `duplicate` and applies nothing.
    site.proxy.swallow_downstream = False
    site.proxy.cut()
    await expect(pending).to_have_attribute("data-status", "duplicate")
    await expect(pending).to_contain_text("applied (confirmed after reconnect)")
    await expect(viewer.locator("#accrued")).to_have_attribute("data-minor", "500")

    # The browser goes offline; a tip made meanwhile waits, and is sent once it is back.
    context = viewer.context
    await context.set_offline(True)
    await expect(viewer.locator("#connection")).not_to_have_attribute("data-state", "open")
    await viewer.click("#tip-buttons button[data-amount-minor='100']")
    waiting = viewer.locator("#tip-log li").first
    await expect(waiting).to_have_attribute("data-status", "pending")
    await context.set_offline(False)
    await expect(waiting).to_have_attribute("data-status", "applied")
    await expect(viewer.locator("#accrued")).to_have_attribute("data-minor", "600")

    stats = await viewer.evaluate("() => window.tipmeter.client.stats")
    assert stats["reconnects"] >= 2
    assert stats["resent"] >= 1
    tab = await site.tab(customer, tab_id)
    assert [line["line_id"] for line in tab["lines"]] == [
        f"tip:{tip_id}",
        f"tip:{await waiting.get_attribute('data-tip-id')}",
    ]
    assert tab["accrued_minor"] == 600
    await expect(model.locator("#feed li[data-event='tip']")).to_have_count(2)

    # A show does not outlive its viewer's connection: the page says so after reconnecting.
    await viewer.click("#show-start")
    await expect(model.locator("#sessions tbody tr")).to_have_count(1)
    # The viewer's page has its start answered (the model's console may see the show first).
    await expect(viewer.locator("#show-stop")).to_be_enabled()
    site.proxy.cut()
    end = viewer.locator("#session-end")
    await expect(end).to_have_attribute("data-reason", "viewer_left")
    await expect(end).to_contain_text("when your connection dropped")
    await expect(model.locator("#sessions tbody tr")).to_have_count(0)
    await expect(model.locator("#feed li[data-event='session_ended']")).to_contain_text(
        "the viewer left"
    )
    await expect(viewer.locator("#show-start")).to_be_enabled()


async def test_the_overlay_resumes_without_repeating_or_missing_alerts(
    pages: Pages, site: Site
) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    link = await overlay_link(model)
    overlay = await pages.open(
        f"{link}&seconds=2", name="overlay", viewport=(1280, 720), allow=NETWORK_FAILURES
    )
    await expect(overlay.locator("body")).to_have_attribute("data-ready", "true")
    viewer = await open_viewer(pages, site.base, customer, room, name="Cleo")
    await open_tab(viewer, "100")
    log = overlay.locator("#alert-log li")

    await tip_preset(viewer, 100)
    await expect(log).to_have_count(1)
    # The overlay's machine loses its network while two more tips come in.
    await overlay.context.set_offline(True)
    await expect(overlay.locator("body")).not_to_have_attribute("data-state", "open")
    await tip_preset(viewer, 500)
    await tip_preset(viewer, 1_000)
    await overlay.context.set_offline(False)
    await expect(log).to_have_count(3)
    assert await log.all_inner_texts() == [
        "Cleo tipped $1.00",
        "Cleo tipped $5.00",
        "Cleo tipped $10.00",
    ]
    shown = await log.evaluate_all("items => items.map(i => i.dataset.eventId)")
    assert len(set(shown)) == 3

    # OBS reloads the source: it picks up after the last alert shown, and shows only new tips.
    await overlay.reload()
    await expect(overlay.locator("body")).to_have_attribute("data-ready", "true")
    await tip_preset(viewer, 2_500)
    await expect(log).to_have_count(1)
    await expect(log.first).to_have_text("Cleo tipped $25.00")
    await overlay.wait_for_timeout(500)  # nothing else arrives late
    await expect(log).to_have_count(1)
    assert await log.first.get_attribute("data-event-id") not in shown


#: Every visible form control that has no label, and every button without an accessible name.
UNLABELLED_JS = """() => [
    ...[...document.querySelectorAll("input, select, textarea")]
        .filter((c) => c.offsetParent !== null && c.labels.length === 0)
        .map((c) => `control #${c.id}`),
    ...[...document.querySelectorAll("button")]
        .filter((b) => b.offsetParent !== null)
        .filter((b) => !(b.getAttribute("aria-label") || b.textContent.trim()))
        .map((b) => `button ${b.outerHTML}`),
]"""


async def test_the_pages_are_labelled_and_work_from_the_keyboard(pages: Pages, site: Site) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    await set_private_rate(model, "7.25")
    viewer = await open_viewer(pages, site.base, customer, room)
    assert await viewer.evaluate(UNLABELLED_JS) == []

    # Open a tab with Enter in the form, tip with the space bar, start a show with Enter.
    await viewer.fill("#cap-input", "30")
    await viewer.press("#cap-input", "Enter")
    await expect(viewer.locator("#meter-card")).to_be_visible()
    assert await viewer.evaluate(UNLABELLED_JS) == []
    await viewer.locator("#tip-buttons button[data-amount-minor='1000']").focus()
    await viewer.keyboard.press("Space")
    await expect(viewer.locator("#tip-log li").first).to_have_attribute("data-status", "applied")
    await viewer.locator("#show-start").focus()
    await viewer.keyboard.press("Enter")
    await expect(viewer.locator("#show-status")).to_contain_text("$7.25 a minute")
    await viewer.locator("#show-stop").focus()
    await viewer.keyboard.press("Enter")
    await expect(viewer.locator("#session-end")).to_have_attribute("data-reason", "stopped")

    assert await model.evaluate(UNLABELLED_JS) == []
    # The console keeps the prices it saved last, in this browser, for the next visit.
    await model.reload()
    await expect(model.locator("body")).to_have_attribute("data-ready", "true")
    await expect(model.locator("#rate-private")).to_have_value("7.25")


async def test_an_overlay_link_that_does_not_work_says_so(pages: Pages, site: Site) -> None:
    room = unique("room")
    incomplete = await pages.open(f"{site.base}/pages/overlay.html", name="overlay")
    await expect(incomplete.locator("#problem")).to_have_text(re.compile("incomplete"))
    refused = (re.compile(r"status of 401"),)
    revoked = await pages.open(
        f"{site.base}/pages/overlay.html#room={room}&token=revoked", name="overlay", allow=refused
    )
    await expect(revoked.locator("#problem")).to_have_text(re.compile("no longer works"))
    await expect(revoked.locator("body")).to_have_attribute("data-state", "closed")


async def test_the_pages_cannot_be_framed_and_run_under_a_strict_policy(
    pages: Pages, site: Site
) -> None:
    """Every page is served with a Content-Security-Policy (own scripts and styles only, no
    inline ones) and frame-ancestors 'none': Chromium refuses to show the viewer page inside
    another site's frame (clickjacking the tip button). The other page tests run the pages
    under that policy: a violation is a console error, which fails them."""
    refusals: list[str] = []
    allowed = (re.compile("frame-ancestors"), re.compile("status of 404"))  # and no favicon
    framing = await pages.open(f"{site.base}/livez", name="framing site", allow=allowed)
    framing.on(
        "console",
        lambda message: (
            refusals.append(message.text) if "frame-ancestors" in message.text else None
        ),
    )
    await framing.set_content(f'<iframe id="f" src="{site.base}/pages/viewer.html"></iframe>')
    with contextlib.suppress(AssertionError):  # the assertion below says what is wrong
        await eventually(lambda: refusals, timeout_s=5)
    assert refusals, "Chromium showed the viewer page inside another page's frame"
    assert "'none'" in refusals[0]


async def test_a_refused_tip_keeps_the_list_readable_and_anonymous_tips_are_marked(
    pages: Pages, site: Site
) -> None:
    """On a phone-sized page, a refused tip's long explanation wraps below the tip instead of
    squeezing "Tip" into a column of letters, clipping the message or stretching the pills;
    an anonymous tip says so in the list."""
    room, customer = unique("room"), unique("viewer")
    await open_model_console(pages, site.base, room)
    query = f"customer={customer}&room={room}&name=Bob"
    viewer = await pages.open(
        f"{site.base}/pages/viewer.html?{query}", name="viewer", viewport=(360, 800)
    )
    await expect(viewer.locator("#connection")).to_have_attribute("data-state", "open")
    await open_tab(viewer, "1.00")
    await viewer.fill("#tip-amount", "0.50")
    await viewer.check("#tip-anonymous")
    await viewer.click("#tip-send")
    first = viewer.locator("#tip-log li").first
    await expect(first).to_have_attribute("data-status", "applied")
    await expect(first).to_have_attribute("data-anonymous", "true")
    await expect(first.locator(".tag.anonymous")).to_have_text("anonymous")
    await viewer.fill("#tip-amount", "5.00")
    await viewer.fill("#tip-message", "a message long enough to need a second line here")
    await viewer.click("#tip-send")
    refused = viewer.locator("#tip-log li").first
    await expect(refused).to_have_attribute("data-status", "refused")
    boxes = await refused.evaluate(
        """(li) => {
            const box = (n) => { const r = n.getBoundingClientRect();
                return {left: r.left, right: r.right, top: r.top, height: r.height}; };
            const what = li.querySelector('.what');
            const tag = li.querySelector('.tag.bad');
            const line = parseFloat(getComputedStyle(what).lineHeight);
            return {li: box(li), what: box(what), tag: box(tag), line,
                    whatWidth: what.getBoundingClientRect().width,
                    tagClipped: tag.scrollWidth > tag.clientWidth + 1,
                    whatClipped: what.scrollWidth > what.clientWidth + 1,
                    tagLines: Math.round(tag.getBoundingClientRect().height /
                                         parseFloat(getComputedStyle(tag).lineHeight))};
        }"""
    )
    assert boxes["whatWidth"] >= 80, boxes  # "Tip: “a message…”" is not a column of letters
    assert not boxes["whatClipped"], boxes
    assert not boxes["tagClipped"], boxes
    assert boxes["tag"]["right"] <= boxes["li"]["right"] + 1, boxes
    assert boxes["tagLines"] <= 2, boxes  # as tall as its text, not stretched


async def test_the_manual_raise_panel_is_not_a_warning(pages: Pages, site: Site) -> None:
    room, customer = unique("room"), unique("viewer")
    await open_model_console(pages, site.base, room)
    viewer = await open_viewer(pages, site.base, customer, room)
    await open_tab(viewer, "50.00")
    await viewer.click("#raise-open")
    await expect(viewer.locator("#raise-cap")).to_be_visible()
    await expect(viewer.locator("#raise-title")).to_have_text("Raise your cap")


async def test_the_overlay_link_is_shown_whole_and_can_be_copied(pages: Pages, site: Site) -> None:
    room = unique("room")
    model = await open_model_console(pages, site.base, room)
    await model.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base)
    link = await overlay_link(model)
    clipped = await model.locator("#overlay-link").evaluate(
        "(box) => box.scrollHeight > box.clientHeight + 1 || box.scrollWidth > box.clientWidth + 1"
    )
    assert not clipped, "the overlay link is cut off"
    await model.click("#overlay-copy")
    await expect(model.locator("#overlay-status")).to_have_text(re.compile("copied"))
    assert await model.evaluate("() => navigator.clipboard.readText()") == link


async def test_a_gateway_error_never_reaches_the_viewer_verbatim(pages: Pages, site: Site) -> None:
    """A processor that lost the tab's hold (here: the sandbox restarted without its journal)
    refuses the raise in its own words ("no hold 'auth_…'"): the viewer reads the page's
    sentence instead."""
    room, customer = unique("room"), unique("viewer")
    allow = (*NETWORK_FAILURES, re.compile(r"status of 400"))
    viewer = await open_viewer(pages, site.base, customer, room, allow=allow)
    await open_tab(viewer, "50.00")
    site.server.stop()
    (Path(site.server.env["TIPMETER_DATA_DIR"]) / "sandbox.jsonl").unlink()
    site.server.start()
    # The client reconnects with backoff: on a busy machine that takes longer than expect's 5 s.
    await expect(viewer.locator("#connection")).to_have_attribute(
        "data-state", "open", timeout=RECONNECT_TIMEOUT_MS
    )
    await viewer.click("#raise-open")
    await viewer.locator("#raise-buttons button").first.click()
    status = viewer.locator("#raise-status")
    await expect(status).to_have_text(re.compile("payment provider refused"))
    text = await status.text_content() or ""
    assert "auth_" not in text
    assert "no hold" not in text


async def test_the_viewer_sees_the_shows_price_before_it_starts(pages: Pages, site: Site) -> None:
    room, customer = unique("room"), unique("viewer")
    model = await open_model_console(pages, site.base, room)
    await set_private_rate(model, "9.00")
    viewer = await open_viewer(pages, site.base, customer, room)
    await open_tab(viewer, "50.00")
    price = viewer.locator("#show-price")
    await expect(price).to_have_attribute("data-minor", "900")
    await expect(price).to_have_text("Price: $9.00 a minute.")
    await expect(viewer.locator("#show-start")).to_be_enabled()


async def test_a_reload_shows_the_last_tab_instead_of_offering_a_new_one(
    pages: Pages, site: Site
) -> None:
    """The welcome carries only an open tab: after a reload, a tab that is settling or settled
    shows its statement (from this browser's memory of it) before a new tab is offered."""
    room, customer = unique("room"), unique("viewer")
    await open_model_console(pages, site.base, room)
    viewer = await open_viewer(pages, site.base, customer, room)
    tab_id = await open_tab(viewer, "50.00")
    await tip_preset(viewer, 500)
    await viewer.click("#settle-button")
    await expect(viewer.locator("#statement")).to_be_visible()
    await viewer.reload()
    await expect(viewer.locator("#connection")).to_have_attribute("data-state", "open")
    await expect(viewer.locator("#statement")).to_be_visible()
    await expect(viewer.locator("#statement")).to_have_attribute("data-tab-id", tab_id)
    await expect(viewer.locator("#open-tab")).to_be_hidden()
    await viewer.click("#new-tab")
    await expect(viewer.locator("#open-tab")).to_be_visible()
    await viewer.reload()
    await expect(viewer.locator("#connection")).to_have_attribute("data-state", "open")
    await expect(viewer.locator("#open-tab")).to_be_visible()
    await expect(viewer.locator("#statement")).to_be_hidden()
