"""Builders shared by settlement's tests."""

from __future__ import annotations

from metering import keys
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from settlement.config import SettlementConfig
from settlement.gateway import Gateway
from settlement.ledger.holds import HoldCustomer, HoldRecord
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.sandbox import SandboxGateway
from settlement.webhooks import WebhookConfig
from settlement.worker import GROUP, Worker
from tests.support.waiting import eventually

#: Tight bounds so that reclaiming and dead-lettering happen within a test.
FAST = SettlementConfig(
    claim_idle_ms=100, gateway_timeout_s=0.05, deliveries_max=3, requeue_after_ms=60_000
)


async def past_claim_bound(meter: Meter, claim_idle_ms: int = FAST.claim_idle_ms) -> None:
    """Wait until every entry pending in the settlement queue has been idle for the claim bound,
    as Redis counts idle time, so that the next burst reclaims it (nothing pending: at once)."""
    client = meter.store.client
    queue = keys.settle_queue()

    async def all_idle() -> bool:
        pending = int((await client.xpending(queue, GROUP))["pending"])
        if not pending:
            return True
        idle = await client.xpending_range(queue, GROUP, "-", "+", pending, idle=claim_idle_ms)
        return len(idle) == pending

    await eventually(all_idle, what="the pending settlement entries pass the claim bound")


async def open_backed_tab(
    meter: Meter,
    gateway: Gateway,
    customer: str = "c1",
    cap_minor: int = 5_000,
    card: str = "tok_visa",
    currency: str = "USD",
    *,
    keep_card: bool = False,
) -> TabRef:
    """Place a hold on the sandbox and open a tab on it; fail the test if either is refused.
    With ``keep_card``, the tab keeps the card on file (for collection)."""
    hold = await gateway.authorize(
        idempotency_key=f"auth:{customer}:{currency}",
        payment_method=card,
        amount_minor=cap_minor,
        currency=currency,
    )
    assert hold.approved, hold
    result = await meter.tabs.open(
        customer=customer,
        currency=currency,
        cap_minor=cap_minor,
        auth_ref=hold.auth_ref,
        capture_before_ms=hold.expires_at_ms,
        payment_method=card if keep_card else "",
    )
    assert result.code is Code.APPLIED, result
    return TabRef(customer, result.tab_id)


async def record_tab_hold(
    meter: Meter,
    ledger: Ledger,
    ref: TabRef,
    card: str,
    now_ms: int,
    customer: HoldCustomer | None = None,
) -> None:
    """Record the hold of tab ``ref`` (from :func:`open_backed_tab`) in the ledger, as the API
    does when it opens a tab: what collection and the invoices read of the card and customer."""
    tab = await meter.tabs.read(ref)
    assert tab is not None
    await ledger.record_hold(
        HoldRecord(
            idempotency_key=f"auth:{ref.tab_id}",
            ref=ref,
            processor="sandbox",
            auth_ref=tab.auth_ref,
            payment_method=card,
            kind="authorize",
            currency=tab.currency,
            amount_minor=tab.cap_minor,
            expires_at_ms=tab.capture_before_ms,
            recorded_at_ms=now_ms,
            customer=customer if customer is not None else HoldCustomer(),
        )
    )


async def raised_by_second_hold(
    meter: Meter, flat: SandboxGateway, second_card: str = "tok_visa"
) -> tuple[TabRef, str, str]:
    """A tab ``cm/tab_m`` at ``flat`` (a sandbox without increments) opened on a 5,000 hold and
    raised to 8,000 by a second hold of 3,000 on ``second_card``: the tab and the references of
    its first and second hold."""
    first = await flat.authorize(
        idempotency_key="auth:tab_m", payment_method="tok_visa", amount_minor=5_000, currency="USD"
    )
    opened = await meter.tabs.open(
        customer="cm",
        currency="USD",
        cap_minor=5_000,
        auth_ref=first.auth_ref,
        capture_before_ms=first.expires_at_ms,
        tab_id="tab_m",
        payment_method="tok_visa",
    )
    assert opened.code is Code.APPLIED
    second = await flat.authorize(
        idempotency_key="auth:tab_m:raise:8000",
        payment_method=second_card,
        amount_minor=3_000,
        currency="USD",
    )
    ref = TabRef("cm", "tab_m")
    raised = await meter.tabs.raise_cap(
        ref,
        cap_minor=8_000,
        auth_ref=second.auth_ref,
        capture_before_ms=second.expires_at_ms,
        second_hold_minor=3_000,
    )
    assert raised.code is Code.APPLIED
    return ref, first.auth_ref, second.auth_ref


def make_worker(
    meter: Meter,
    gateway: SandboxGateway | Gateway | ProcessorRegistry,
    ledger: Ledger,
    config: SettlementConfig = FAST,
    webhook_config: WebhookConfig | None = None,
    consumer: str = "w1",
) -> Worker:
    """A worker with the test's bounds."""
    return Worker(
        meter,
        gateway,
        ledger=ledger,
        config=config,
        webhook_config=webhook_config,
        consumer=consumer,
    )


async def settled_share(ledger: Ledger, room: str, currency: str = "USD") -> int:
    """The model's share of ``room``'s captured tabs in ``currency``, as the ledger records it."""
    for earnings in await ledger.room_earnings(room):
        if earnings.currency == currency:
            return earnings.share_minor
    return 0
