"""The ``subscription`` message on a real server process: a member's devices follow each change
of her subscriptions, whoever makes it, and a device gets them all when it connects."""

from __future__ import annotations

import time

from clients.protocol import MembershipView, SubscriptionUpdate
from clients.sdk import Backend, Client
from clients.tickets import Role
from tests.server.test_subscriptions_api import GOLD, SILVER, server
from tests.support.processes import API_KEY, TipmeterProcess, ticket

__all__ = ["server"]

#: Generous: a pass returns as soon as the message arrives.
WAIT_S = 20.0


async def _membership(viewer: Client, sid: str, **wanted: object) -> MembershipView:
    """The next ``subscription`` message of ``sid`` whose fields are as ``wanted`` (earlier
    ones are skipped: each change sends one)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = await viewer.next_message(max(0.1, deadline - time.monotonic()))
        if isinstance(message, SubscriptionUpdate) and message.subscription.subscription_id == sid:
            view = message.subscription
            if all(getattr(view, name) == value for name, value in wanted.items()):
                return view
    raise AssertionError(f"no subscription message of {sid} with {wanted}")


async def test_a_member_s_devices_follow_each_change_and_a_new_device_gets_them_all(
    server: TipmeterProcess,
) -> None:
    backend = Backend(server.base_url, API_KEY)
    await backend.create_plan(SILVER)
    await backend.create_plan(GOLD)
    trial = {**SILVER, "plan_id": "silver-trial", "trial_days": 7}
    await backend.create_plan(trial)
    async with (
        Client(server.ws_url, ticket(Role.VIEWER, "dora", currency="EUR")) as phone,
        Client(server.ws_url, ticket(Role.VIEWER, "other", currency="EUR")) as stranger,
    ):
        sub = await backend.subscribe(
            "dora",
            "silver",
            "EUR",
            "tok_visa",
            country="DE",
            country_evidence="billing_address",
            idempotency_key="push-dora",
        )
        sid = sub["subscription_id"]
        active = await _membership(phone, sid, state="active", period_no=1)
        assert (active.plan_id, active.level, active.rank) == ("silver", "silver", 1)
        assert (active.price_minor, active.currency, active.features) == (990, "EUR", ["hd"])
        assert active.next_charge_at_ms == active.period_ends_at_ms == sub["period"]["ends_at_ms"]
        assert active.allowance is None  # the plan gives none

        await backend.change_plan(sid, "gold")
        upgraded = await _membership(phone, sid, plan_id="gold")
        assert (upgraded.level, upgraded.price_minor) == ("gold", 1990)
        assert upgraded.adjustment_minor > 0
        assert upgraded.updated_at_ms >= active.updated_at_ms

        await backend.cancel(sid, "period_end")
        ending = await _membership(phone, sid, state="active")
        assert ending.cancel_at_ms == ending.period_ends_at_ms
        assert ending.next_charge_at_ms is None

        # A second device connects: it is sent her subscriptions at once.
        async with Client(server.ws_url, ticket(Role.VIEWER, "dora", currency="USD")) as laptop:
            seen = await _membership(laptop, sid, plan_id="gold")
            assert seen.cancel_at_ms == ending.cancel_at_ms
            await backend.cancel(sid, "now")
            for device in (phone, laptop):
                ended = await _membership(device, sid, state="cancelled")
                assert ended.ended_at_ms is not None
                assert ended.features == []

        # A trial: trialing, then (a second subscription) listed on its own.
        second = await backend.subscribe(
            "dora",
            "silver-trial",
            "EUR",
            "tok_visa",
            country="DE",
            country_evidence="billing_address",
            idempotency_key="push-dora-trial",
        )
        trialing = await _membership(phone, second["subscription_id"], state="trialing")
        assert trialing.trial_ends_at_ms == trialing.next_charge_at_ms
        assert trialing.period_no == 0

        # Another customer's connection heard nothing of hers.
        while (message := await stranger.next_message(0.05)) is not None:
            assert not isinstance(message, SubscriptionUpdate), message
