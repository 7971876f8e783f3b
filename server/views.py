"""What a viewer sees of her tab and her sessions: the money core's records as protocol views.

The hub (fan-out) decodes the balances the scripts announce with :func:`decode_tab_announcement`;
the WebSocket handlers build the views they answer with from a script's result
(:func:`tab_view`) or from a fresh read (:func:`current_tab`, :func:`session_view`).
"""

from __future__ import annotations

import msgpack

from clients.protocol import SessionView, TabView
from metering.meter import Meter
from metering.outcomes import Balance, TabRef


def tab_view(tab_id: str, currency: str, balance: Balance) -> TabView | None:
    """A tab's balance as its viewer sees it (None for a result that reached no tab)."""
    if balance.state is None:
        return None
    return TabView(
        tab_id=tab_id,
        currency=currency,
        state=str(balance.state),
        cap_minor=balance.cap_minor,
        accrued_minor=balance.accrued_minor,
        version=balance.version,
        burn_minor_per_minute=balance.burn_minor_per_minute,
    )


async def current_tab(meter: Meter, customer: str, currency: str) -> TabView | None:
    """The customer's open tab in ``currency`` as a viewer sees it, or None."""
    tab_id = await meter.tabs.find_open(customer, currency)
    if tab_id is None:
        return None
    found = await meter.tabs.balance(TabRef(customer, tab_id))
    if found is None:
        return None
    tab_currency, balance = found
    return tab_view(tab_id, tab_currency, balance)


def decode_tab_announcement(data: bytes) -> TabView:
    """A balance the scripts announced on the customer's channel (msgpack), as a view."""
    raw = msgpack.unpackb(data, raw=False)
    return TabView(
        tab_id=str(raw["tab"]),
        currency=str(raw["currency"]),
        state=str(raw["state"]),
        cap_minor=int(raw["cap"]),
        accrued_minor=int(raw["accrued"]),
        version=int(raw["ver"]),
        burn_minor_per_minute=int(raw.get("burn", 0)),
    )


async def session_view(meter: Meter, customer: str, session_id: str) -> SessionView | None:
    """A session of ``customer`` as its viewer sees it, or None if there is no such session."""
    view = await meter.sessions.read(customer, session_id)
    if view is None:
        return None
    ended = view.state == "ended"
    return SessionView(
        session_id=session_id,
        room=view.room,
        kind=view.kind,
        state=view.state,
        rate_per_minute_minor=view.rate_per_minute_minor,
        minimum_s=view.minimum_s,
        started_at_ms=view.started_at_ms,
        seconds=view.billed_s,
        amount_minor=view.amount_minor,
        end_reason=view.reason if ended else None,
        ended_at_ms=view.ended_at_ms if ended else None,
    )
