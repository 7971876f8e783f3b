"""Refunds of requests declined or expired after their tab froze (docs/purchases.md).

Theory of operation. While a tab is open, a declined or expired request is voided: its line
falls to 0 and is never captured. Once the tab froze for settlement its amount is fixed, so
the void answers ``tab_not_open`` and :class:`server.catalog.Shop` lists the request in
``tm:{buys}:refunds`` (``room/customer/purchase``, scored by when to look at it next) instead.
Every server sweeps that list with :func:`refund_owed`:

1. a purchase no longer pending (fulfilled after all, refunded by another server, or its record
   expired) leaves the list;
2. otherwise its line ``buy:<purchase id>`` is refunded in full through the refunds flow
   (:class:`settlement.refunds.service.Refunds`) with a refund id derived from the customer
   and the purchase id, as a support override (the model declined it, or did not do it in
   time: no refund window and no consent apply). The refund id is the idempotency key all
   the way to the processor, so servers sweeping at once, a crash or a retry refund it once;
3. a refund that ``succeeded`` is recorded on the purchase (``refund_purchase.lua``: state
   ``refunded``, a ``purchase_refunded`` room event) and the request leaves the list;
4. a tab not yet in the ledger (the capture still running), or a refund still ``pending`` at the
   processor, is looked at again after :data:`REFUND_RETRY_MS`;
5. a tab that was not captured (its capture declined: the debt goes to collection with the
   line in it) or a refund that failed at the processor cannot be refunded here: it leaves
   the list with a warning in the log, for support.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Final

from metering import keys
from metering.outcomes import Code
from metering.purchase_lifecycle import PurchaseState
from metering.store import as_text, translated
from server.catalog import Shop
from settlement.refunds.errors import NotRefundable, RefundIdReused, RefundNotFound
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest, Refunds

log = logging.getLogger("tipmeter.catalog")

#: Refunds owed one sweep looks at, at most.
REFUND_BATCH_MAX: Final = 50
#: How long an owed refund whose tab is not in the ledger yet (or whose processor has not
#: answered) waits before the sweep looks at it again.
REFUND_RETRY_MS: Final = 5_000
#: Who the refunds flow records as having decided these refunds (a support override).
REFUND_BY: Final = "tipmeter"
REFUND_WHY: Final = "request declined or not done in time after the tab froze"


def refund_id_of(customer: str, purchase_id: str) -> str:
    """The refund id of a purchase's refund: derived from the purchase, never from a retry, so
    the refunds flow (and the processor, keyed by it) refunds a purchase at most once."""
    digest = hashlib.sha256(f"{customer}/{purchase_id}".encode()).hexdigest()
    return f"buy-{digest[:40]}"


@dataclass(frozen=True, slots=True)
class OwedRefund:
    """What one sweep did with one owed refund: the purchase and its refund's status
    (``succeeded``, ``pending``, ``not_in_ledger``, ``not_refundable``, ``failed``, or
    ``not_pending`` for a purchase that left the list without one)."""

    customer: str
    purchase_id: str
    status: str


async def refund_owed(shop: Shop, refunds: Refunds, now_ms: int) -> list[OwedRefund]:
    """Refund the requests owed a refund whose time has come (at most
    :data:`REFUND_BATCH_MAX`); see the module docstring for what becomes of each."""
    client = shop.meter.store.client
    target = keys.purchase_refunds_due()
    with translated():
        due = await client.zrangebyscore(target, "-inf", now_ms, start=0, num=REFUND_BATCH_MAX)
    done = []
    for raw in due:
        member = as_text(raw)
        _, customer, purchase_id = member.split("/")
        status = await _refund_one(shop, refunds, customer, purchase_id)
        with translated():
            if status in ("not_in_ledger", "pending"):
                await client.zadd(target, {member: now_ms + REFUND_RETRY_MS})
            else:
                await client.zrem(target, member)
        done.append(OwedRefund(customer, purchase_id, status))
    return done


async def _refund_one(shop: Shop, refunds: Refunds, customer: str, purchase_id: str) -> str:
    view = await shop.meter.purchases.read(customer, purchase_id)
    if view is None or view.state is not PurchaseState.PENDING:
        return "not_pending"
    request = RefundRequest(
        refund_id=refund_id_of(customer, purchase_id),
        ref=view.ref,
        reason=Reason.SHOW_NOT_DELIVERED,
        lines={f"buy:{purchase_id}": None},
        override_by=REFUND_BY,
        override_reason=REFUND_WHY,
    )
    fields = {"customer": customer, "purchase_id": purchase_id}
    try:
        answer = await refunds.request(request)
    except RefundNotFound:
        return "not_in_ledger"
    except (NotRefundable, RefundIdReused) as exc:
        log.warning("purchase not refundable", extra={"fields": {**fields, "error": str(exc)}})
        return "not_refundable"
    status = str(answer.body["status"])
    if status == "succeeded":
        result = await shop.meter.refunded(customer, purchase_id)
        if result.code is Code.BUSY:
            return "pending"  # refunded; recorded on the purchase on the next look
        return status
    if status != "pending":
        log.warning("purchase refund not made", extra={"fields": {**fields, "status": status}})
        return "failed"
    return status
