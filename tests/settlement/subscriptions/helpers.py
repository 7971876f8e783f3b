"""Plans and sign-ups for subscription tests: a real ledger database, the sandbox processor."""

from __future__ import annotations

from typing import Any

from metering.clock import FakeClock
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.sandbox import SandboxGateway
from settlement.subscriptions.plans import Plan, plan_from_json
from settlement.subscriptions.scheduler import Renewals
from settlement.subscriptions.service import NewSubscription, Subscriptions

DAY_MS = 86_400_000
#: 2026-01-31 00:00 UTC: a month end, so month arithmetic is exercised.
START_MS = 1_769_817_600_000


def plan(plan_id: str = "gold", **fields: Any) -> Plan:
    """A monthly site plan at 10.00 USD / 9.00 EUR unless told otherwise."""
    data: dict[str, Any] = {
        "plan_id": plan_id,
        "kind": "site",
        "prices": {"USD": {"price_minor": 1000}, "EUR": {"price_minor": 900}},
        "features": ["hd", "chat"],
    }
    data.update(fields)
    return plan_from_json(data)


def signup(
    sid: str,
    plan_id: str = "gold",
    *,
    card: str = "tok_visa",
    currency: str = "USD",
    country: str = "DE",
    customer: str = "",
) -> NewSubscription:
    """A sign-up of customer ``cust-<sid>``."""
    return NewSubscription(
        subscription_id=sid,
        customer=customer or f"cust-{sid}",
        plan_id=plan_id,
        currency=currency,
        payment_method=card,
        country=country,
        country_evidence="billing_address",
        email=f"{sid}@example.com",
    )


class World:
    """The service and the scheduler over one ledger and one sandbox, on a fake clock."""

    def __init__(self, ledger: Ledger, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock(START_MS)
        self.gateway = SandboxGateway(clock=self.clock)
        self.processors = ProcessorRegistry.single(self.gateway, name="sandbox")
        self.ledger = ledger
        self.subs = Subscriptions(ledger.database, self.processors)
        self.renewals = Renewals(ledger.database, self.processors)

    async def run(self) -> None:
        """Run everything due now."""
        await self.renewals.run_due(self.clock.now_ms())

    async def advance_days(self, days: int, *, step_days: int = 1) -> None:
        """Move the clock ``days`` days, running the scheduler every ``step_days``."""
        for _ in range(0, days, step_days):
            self.clock.advance(step_days * DAY_MS)
            await self.run()
