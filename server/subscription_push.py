"""A member's subscriptions, live on her devices (server → viewer ``subscription`` messages).

Theory of operation. Every change a member sees of a subscription is written to PostgreSQL by
one transaction, and a trigger on ``subscriptions`` (migration ``0011_membership_status.sql``)
sends ``<customer> <subscription_id>`` on :data:`SUBSCRIPTIONS_CHANNEL` in that same
transaction, whatever wrote it (the API, the renewal scheduler, dunning, a pay link): the
notification exists exactly when the change committed. The process's listening connection
(:class:`server.pg_listen.PgListener`) hands it here; when the customer has a viewer
connection on this process, the subscription is read from the ledger — the same view as
``GET /v1/subscriptions/{id}`` — and sent whole to each of her connections. A viewer is sent
each of her subscriptions when she is welcomed, and again after the listening connection
reconnects (a notification sent while it was down is lost to this process): whole state, never
a patch, so a push repeated or reordered costs nothing (the client keeps the one with the
highest ``updated_at_ms``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from clients.protocol import (
    MEMBERSHIPS_WELCOME_MAX,
    AllowanceView,
    MembershipView,
    SubscriptionUpdate,
)
from clients.tickets import Role
from server.connection import Connection
from settlement.ledger.errors import LedgerError
from settlement.subscriptions.service import Subscriptions
from settlement.subscriptions.store import SUBSCRIPTIONS_CHANNEL

log = logging.getLogger("tipmeter.membership")


def membership_view(view: dict[str, Any]) -> MembershipView:
    """The ``subscription`` message's object from the API's view of a subscription."""
    plan = view["plan"]
    allowance = view.get("allowance")
    return MembershipView(
        subscription_id=view["subscription_id"],
        plan_id=view["plan_id"],
        kind=str(plan.get("kind", "")),
        level=str(plan.get("level", "")),
        rank=int(plan.get("rank", 0)),
        state=view["state"],
        currency=view["currency"],
        period_no=view["period"]["period_no"],
        period_ends_at_ms=view["period"]["ends_at_ms"],
        updated_at_ms=view["updated_at_ms"],
        room=plan.get("room") or None,
        price_minor=view["next_price_minor"],
        next_charge_at_ms=view["next_charge_at_ms"],
        adjustment_minor=view["adjustment_minor"],
        trial_ends_at_ms=view["trial_ends_at_ms"],
        cancel_at_ms=view["cancel_at_ms"],
        past_due_since_ms=view["past_due_since_ms"],
        ended_at_ms=view["ended_at_ms"],
        pause_at_ms=view.get("pause_at_ms"),
        paused_at_ms=view.get("paused_at_ms"),
        features=list(view["features"]),
        # Added to the view by the allowances (h-allow); absent: the plan gives none.
        allowance=[
            AllowanceView(
                kind=a["kind"], unit=a["unit"], granted=a["granted"], used=a["used"], left=a["left"]
            )
            for a in allowance
        ]
        if isinstance(allowance, list)
        else None,
    )


class SubscriptionPush:
    """The viewers of this process, by customer, and the channel that keeps their
    memberships current."""

    channel = SUBSCRIPTIONS_CHANNEL

    def __init__(
        self,
        service: Callable[[], Subscriptions],
        view: Callable[[str], Coroutine[Any, Any, dict[str, Any] | None]],
    ) -> None:
        self.service = service
        #: The API's view of one subscription (``GET /v1/subscriptions/{id}``).
        self.view = view
        self.customers: dict[str, set[Connection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def join(self, conn: Connection) -> None:
        """A viewer was welcomed: follow her customer, and send her subscriptions now."""
        if conn.role is not Role.VIEWER:
            return
        self.customers.setdefault(conn.subject, set()).add(conn)
        task = asyncio.get_running_loop().create_task(self.push_all(conn.subject, only=conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def leave(self, conn: Connection) -> None:
        """A connection closed."""
        viewers = self.customers.get(conn.subject)
        if viewers is not None:
            viewers.discard(conn)
            if not viewers:
                del self.customers[conn.subject]

    async def push_all(self, customer: str, *, only: Connection | None = None) -> None:
        """Send each of ``customer``'s subscriptions (newest first, bounded) to her viewers
        (to ``only``, a connection just welcomed)."""
        try:
            found = await self.service().of_customer(customer, MEMBERSHIPS_WELCOME_MAX)
        except LedgerError as exc:
            # The next notification, or the reconnect after the ledger is back, sends it again.
            log.warning("memberships unavailable", extra={"fields": {"error": repr(exc)}})
            return
        for subscription_id in reversed(found):  # the newest last: the panel lists it first
            await self.push(customer, subscription_id, only=only)

    async def push(
        self, customer: str, subscription_id: str, *, only: Connection | None = None
    ) -> None:
        """Send one subscription to ``customer``'s viewers on this process."""
        viewers = [only] if only is not None else list(self.customers.get(customer, ()))
        if not viewers:
            return
        try:
            view = await self.view(subscription_id)
        except LedgerError as exc:
            log.warning("membership unavailable", extra={"fields": {"error": repr(exc)}})
            return
        except Exception:
            log.exception("membership push failed", extra={"fields": {"customer": customer}})
            return
        if view is None or view["customer"] != customer:
            return
        message = SubscriptionUpdate(subscription=membership_view(view))
        for conn in viewers:
            conn.send(message, "subscription")

    # -- the listener's channel (server.pg_listen) ------------------------------------------

    async def resync(self) -> None:
        """(Re)connected: every followed customer's subscriptions again."""
        for customer in list(self.customers):
            await self.push_all(customer)

    async def notified(self, payload: str) -> None:
        """``<customer> <subscription_id>`` changed."""
        customer, _, subscription_id = payload.partition(" ")
        if customer in self.customers and subscription_id:
            await self.push(customer, subscription_id)

    async def idle(self) -> None:
        """Nothing to do periodically."""

    async def aclose(self) -> None:
        """Stop the pushes under way (at shutdown: the connections are closing too)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
