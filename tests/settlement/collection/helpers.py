"""Failed tabs for collection tests: a real meter, the sandbox and the real worker."""

from __future__ import annotations

from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import TabRef
from settlement.gateway import Gateway
from settlement.ledger.ledger import Ledger
from settlement.ledger.settlements import settlement_id_of
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab


async def card_tab(meter: Meter, gateway: Gateway, customer: str, card: str) -> TabRef:
    """An open USD tab of cap 5,000 under a hold on ``card`` (kept on file for collection)."""
    return await open_backed_tab(meter, gateway, customer, card=card, keep_card=True)


async def failed_tab(
    meter: Meter,
    gateway: SandboxGateway,
    ledger: Ledger,
    *,
    customer: str = "c1",
    reason: str = "insufficient_funds",
    amounts: tuple[tuple[str, int], ...] = (("roomA", 300), ("roomB", 200)),
) -> str:
    """A tab whose capture the sandbox declines with ``reason``; its settlement id."""
    ref = await card_tab(meter, gateway, customer, f"tok_capture_decline_{reason}")
    for number, (room, amount) in enumerate(amounts):
        assert (await meter.tip(ref, tip(f"t{number}", amount, room=room))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    report = await make_worker(meter, gateway, ledger).run_burst()
    assert report.statuses == {"failed": 1}, report
    return settlement_id_of(ref)
