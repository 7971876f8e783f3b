"""What ``make run`` prints: how to connect, with a funded demo viewer and ready tickets."""

from __future__ import annotations

import secrets
from typing import Final

from clients.tickets import Role
from metering import keys
from metering.outcomes import Code
from metering.store import translated
from server.api import feed_token_hash
from server.runtime import Runtime

DEMO_CUSTOMER: Final = "demo-viewer"
DEMO_ROOM: Final = "demo-model"
DEMO_CAP_MINOR: Final = 5_000
#: Demo tickets last as long as the server accepts (TIPMETER_TICKET_TTL_S_MAX caps this): the
#: banner says how long that is, and how to mint more.
DEMO_TICKET_TTL_MS: Final = 3_600_000


async def introduce(rt: Runtime) -> str:
    """Open a demo tab if the demo viewer has none, mint tickets, and describe it all."""
    meter = rt.meter
    tab_id = await meter.tabs.find_open(DEMO_CUSTOMER, "USD")
    if tab_id is None:
        tab_id = f"tab_demo_{secrets.token_hex(4)}"
        hold = await rt.gateway.authorize(
            idempotency_key=f"auth:{tab_id}",
            payment_method="tok_visa",
            amount_minor=DEMO_CAP_MINOR,
            currency="USD",
        )
        opened = await meter.tabs.open(
            customer=DEMO_CUSTOMER,
            currency="USD",
            cap_minor=DEMO_CAP_MINOR,
            auth_ref=hold.auth_ref,
            capture_before_ms=hold.expires_at_ms,
            tab_id=tab_id,
        )
        if opened.code is not Code.APPLIED:
            tab_id = opened.tab_id
    viewer, expires_at_ms = rt.tickets.mint(
        role=Role.VIEWER,
        subject=DEMO_CUSTOMER,
        ttl_ms=DEMO_TICKET_TTL_MS,
        name="Demo Viewer",
        currency="USD",
    )
    model, _ = rt.tickets.mint(role=Role.MODEL, subject=DEMO_ROOM, ttl_ms=DEMO_TICKET_TTL_MS)
    life_s = (expires_at_ms - meter.clock.now_ms() + 500) // 1000
    feed_token = secrets.token_urlsafe(24)
    with translated():
        await rt.store.client.hset(
            keys.room_profile(DEMO_ROOM), "feed_token_sha256", feed_token_hash(feed_token)
        )
    base = rt.settings.base_url
    ws = base.replace("http", "ws", 1) + "/ws"
    key = rt.settings.api_keys[0]
    tab_url = f"{base}/v1/customers/{DEMO_CUSTOMER}/tabs/{tab_id}"
    return f"""
tipmeter is running at {base}  (health: {base}/readyz, metrics: {base}/metrics)

  API key (HTTP API, Authorization: Bearer …):  {key}
  demo viewer {DEMO_CUSTOMER!r} has tab {tab_id} with a USD cap of {DEMO_CAP_MINOR} minor units

  tickets (each opens one connection; valid for {life_s} s, TIPMETER_TICKET_TTL_S_MAX):
    viewer ticket:  {viewer}
    model ticket:   {model}
    connect with:   {ws}?ticket=<ticket>
  event feed for broadcast tools:   {base}/events/{DEMO_ROOM}/{feed_token}/

  web pages (no API key in the browser; the demo backend plays the cam site's):
    viewer:         {base}/pages/viewer.html
    model console:  {base}/pages/model.html
    OBS overlay:    {base}/pages/overlay.html#room={DEMO_ROOM}&token={feed_token}

  more tickets (viewer, then model):
    curl -s -X POST {base}/v1/tickets -H 'Authorization: Bearer {key}' \\
      -d '{{"role": "viewer", "subject": "{DEMO_CUSTOMER}", "currency": "USD"}}'
    curl -s -X POST {base}/v1/tickets -H 'Authorization: Bearer {key}' \\
      -d '{{"role": "model", "subject": "{DEMO_ROOM}"}}'
  settle the demo tab (one capture; the worker runs in this process), then read its statement:
    curl -s -X POST {tab_url}/settle -H 'Authorization: Bearer {key}'
    curl -s {tab_url}/statement -H 'Authorization: Bearer {key}'
  tip from Python:  python tip.py VIEWER_TICKET MODEL_TICKET  (README.md, "Connect a client")
"""
