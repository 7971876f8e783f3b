"""A past-due membership paid through a collection pay link, end to end on a real server
process with the sandbox processor: the period is paid once, the membership restored, its
invoice written as for any renewal."""

from __future__ import annotations

import httpx
import pytest

from clients.errors import Refused
from clients.sdk import Backend
from tests.server.conftest import api
from tests.server.test_subscriptions_api import SILVER, server
from tests.support.processes import API_KEY, TipmeterProcess

__all__ = ["server"]


async def test_a_past_due_period_paid_through_its_link_restores_the_membership_once(
    server: TipmeterProcess,
) -> None:
    backend = Backend(server.base_url, API_KEY)
    await backend.create_plan(SILVER)
    sub = await backend.subscribe(
        "erin",
        "silver",
        "EUR",
        "tok_decline_insufficient_funds",
        country="DE",
        country_evidence="billing_address",
        idempotency_key="paylink-erin",
    )
    sid = sub["subscription_id"]
    assert sub["state"] == "past_due"
    with pytest.raises(Refused) as refused:
        await backend.subscription_pay_link("sub_nothing")
    assert refused.value.code == "subscription_not_found"

    link = await backend.subscription_pay_link(sid, expiry_h=24)
    assert (link["period_no"], link["amount_minor"], link["currency"]) == (1, 990, "EUR")
    again = await backend.subscription_pay_link(sid)  # a second link: the same case
    assert again["case_id"] == link["case_id"]
    url = str(link["url"])
    async with httpx.AsyncClient(timeout=10) as browser:
        statement = await browser.get(url)
        assert statement.status_code == 200
        assert "Membership" in statement.text
        assert "9.90 EUR" in statement.text
        # A card that declines first: the page says why, the membership stays past due.
        declined = await browser.post(
            f"{url}/card", data={"payment_method": "tok_decline_insufficient_funds"}
        )
        assert declined.status_code == 303
        outcome = await browser.get(f"{url}/outcome")
        assert "insufficient" in outcome.text.lower()
        assert (await backend.subscription(sid))["state"] == "past_due"
        paid = await browser.post(f"{url}/card", data={"payment_method": "tok_visa"})
        assert paid.status_code == 303
    view = await backend.subscription(sid)
    async with api(server) as http:
        case = (await http.get(f"/v1/collection/cases/{link['case_id']}")).json()
    assert [a["status"] for a in case["attempts"]] == ["declined", "approved"]
    assert case["state"] == "paid"
    assert (case["origin"], case["subscription_id"], case["period_no"]) == ("membership", sid, 1)

    # Restored: active, the period paid once (the first renewal's decline, then the link's
    # charge), one invoice as for any renewal, with the link's capture.
    assert view["state"] == "active"
    assert view["past_due_since_ms"] is None
    assert [(p["period_no"], p["status"]) for p in view["periods"]] == [(1, "paid")]
    assert [h["event"] for h in view["history"]][-2:] == ["decline", "renew"]
    invoices = await backend.invoices(sid)
    assert [(i["period_no"], i["total_minor"]) for i in invoices] == [(1, 990)]
    assert invoices[0]["capture_id"] == case["capture_id"]

    # Nothing is owed any more: no new link, the old one is closed, no renewal charges it again.
    with pytest.raises(Refused) as refused:
        await backend.subscription_pay_link(sid)
    assert refused.value.code == "nothing_owed"
    async with httpx.AsyncClient(timeout=10) as browser:
        assert (await browser.get(url)).status_code == 410
        late = await browser.post(f"{url}/card", data={"payment_method": "tok_visa"})
        assert late.status_code in (303, 410)
    async with api(server) as http:
        ran = (await http.post("/v1/subscriptions/run")).json()
    assert ran["approved"] == 0
    assert len(await backend.invoices(sid)) == 1
