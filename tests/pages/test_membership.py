"""The viewer page's "my membership" panel in Chromium: sign up with a trial on the sandbox's
card page, see it, upgrade, cancel; the panel follows each change live from the server's
`subscription` messages, including one the cam site makes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.pages.conftest import Pages, Site, unique
from tests.pages.flows import open_viewer

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _plan(site: Site, plan: dict[str, Any]) -> None:
    async with site.api() as http:
        made = await http.post("/v1/plans", json=plan)
    assert made.status_code in (200, 201), made.text


async def test_sign_up_with_a_trial_upgrade_and_cancel_the_panel_follows_live(
    pages: Pages, site: Site
) -> None:
    room, customer = unique("room"), unique("viewer")
    tag = customer.rsplit("-", 1)[1]
    bronze, gold = f"bronze-{tag}", f"gold-{tag}"
    base = {"kind": "site", "features": ["hd"], "period": {"unit": "month", "length": 1}}
    await _plan(
        site,
        {
            **base,
            "plan_id": bronze,
            "level": "bronze",
            "rank": 1,
            "trial_days": 7,
            "prices": {"USD": {"price_minor": 500}},
        },
    )
    await _plan(
        site,
        {
            **base,
            "plan_id": gold,
            "level": "gold",
            "rank": 3,
            "prices": {"USD": {"price_minor": 1500}},
            "allowances": [{"kind": "private", "unit": "seconds", "granted": 600}],
        },
    )
    viewer = await open_viewer(pages, site.base, customer, room)
    panel = viewer.locator("#membership")
    await expect(panel.locator("#membership-form")).to_be_visible()
    await expect(panel.locator("#membership-current")).to_be_hidden()

    # Sign up: the card is entered on the processor's (the sandbox's) own page.
    await viewer.select_option("#membership-plan-select", bronze)
    await viewer.select_option("#membership-country", "US")
    await viewer.click("#membership-signup")
    await viewer.wait_for_url("**/demo/memberships/card/**")
    await expect(viewer.locator("#owed")).to_have_text("0.00 USD")  # a free trial
    await viewer.select_option("#card", "tok_visa")
    await viewer.click("#submit")
    await viewer.wait_for_url("**/pages/viewer.html?**")
    await expect(viewer.locator("#connection")).to_have_attribute("data-state", "open")
    await expect(panel.locator("#membership-status")).to_have_text(
        "Welcome! Your membership is set up."
    )
    await expect(panel.locator("#membership-state")).to_have_text("trial")
    await expect(panel.locator("#membership-plan")).to_have_text("bronze")
    await expect(panel.locator("#membership-next")).to_contain_text("$5.00 on ")
    await expect(panel.locator("#membership-note")).to_contain_text("Your trial ends on")
    await expect(panel.locator("#membership-form")).to_be_hidden()
    await expect(panel.locator("#membership-allowance")).to_be_hidden()  # the plan gives none

    # Upgrade from the panel (in the trial: free, so the next charge is gold's price).
    await viewer.select_option("#membership-change-plan", gold)
    await viewer.click("#membership-change")
    await expect(panel.locator("#membership-plan")).to_have_text("gold")
    await expect(panel.locator("#membership-next")).to_contain_text("$15.00 on ")
    # Gold gives ten free minutes of private shows a period: the allowance left shows.
    await expect(panel.locator("#membership-allowance li")).to_have_text(
        "private: 10 min left of 10 min"
    )

    # The cam site cancels at the period's end (no action on this page): the panel follows.
    async with site.api() as http:
        listed = (await http.get(f"/v1/customers/{customer}/subscriptions")).json()
        sid = listed["subscriptions"][0]["subscription_id"]
        done = await http.post(f"/v1/subscriptions/{sid}/cancel", json={"mode": "period_end"})
    assert done.status_code == 200, done.text
    await expect(panel.locator("#membership-note")).to_contain_text("Your membership ends on")
    await expect(panel.locator("#membership-next")).to_have_text("none")
    await expect(panel.locator("#membership-cancel-end")).to_be_disabled()

    # Cancel now from the panel: cancelled, and the sign-up form is offered again.
    await viewer.click("#membership-cancel-now")
    await expect(panel.locator("#membership-state")).to_have_text("cancelled")
    await expect(panel.locator("#membership-note")).to_contain_text("Your membership ended on")
    await expect(panel.locator("#membership-form")).to_be_visible()
    await expect(panel.locator("#membership-change")).to_be_disabled()
    async with site.api() as http:
        final = (await http.get(f"/v1/subscriptions/{sid}")).json()
    assert (final["state"], final["plan_id"]) == ("cancelled", gold)


async def test_the_panel_s_demo_routes_refuse_what_is_not_the_demo_s(site: Site) -> None:
    tag = unique("x").rsplit("-", 1)[1]
    plan_id = f"silver-{tag}"
    await _plan(
        site,
        {
            "plan_id": plan_id,
            "kind": "site",
            "level": "silver",
            "prices": {"USD": {"price_minor": 700}},
        },
    )
    async with site.api() as http:
        made = await http.post(
            "/v1/subscriptions",
            headers={"Idempotency-Key": f"real-{tag}"},
            json={
                "customer": f"alice-{tag}",
                "plan_id": plan_id,
                "currency": "USD",
                "payment_method": "tok_visa",
                "country": "US",
                "country_evidence": "billing_address",
            },
        )
    assert made.status_code == 201, made.text
    real = made.json()["subscription_id"]
    async with httpx.AsyncClient(base_url=site.base, timeout=10) as browser:
        # A customer who is not a demo one, another customer's (real) subscription.
        refused = await browser.post(
            f"/demo/customers/alice-{tag}/memberships", json={"plan_id": plan_id}
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "not_a_demo_id"
        cancel = await browser.post(f"/demo/subscriptions/{real}/cancel", json={"mode": "now"})
        assert cancel.status_code == 403
        # A checkout is signed: a forged or altered one opens no card page.
        checkout = await browser.post(
            f"/demo/customers/{unique('viewer')}/memberships", json={"plan_id": plan_id}
        )
        assert checkout.status_code == 201, checkout.text
        card_url = checkout.json()["card_url"]
        assert (await browser.get(card_url)).status_code == 200
        body, signature = card_url.rsplit("/", 1)[1].split(".")
        forged = f"/demo/memberships/card/{body}.{'0' * len(signature)}"
        for url in (forged, "/demo/memberships/card/nothing.here"):
            answer = await browser.post(url, data={"payment_method": "tok_visa"})
            assert answer.status_code == 404
            assert answer.json()["error"]["code"] == "checkout_not_found"
    async with site.api() as http:
        still = (await http.get(f"/v1/subscriptions/{real}")).json()
    assert still["state"] == "active"
