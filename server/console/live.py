"""The console's live panel: a snapshot of the business pushed over a WebSocket
(``/console/live``) every :data:`LIVE_INTERVAL_S` seconds.

What each figure is and where it comes from:

- ``connections`` — open WebSocket connections of this process, by role (its Prometheus
  gauge; each process of a deployment counts its own);
- ``tips_per_s`` — tips applied by this process over the last interval (its tally);
- ``shows`` — metered shows running in the whole deployment, by kind: the live billing owners'
  session sets in Redis (``tm:{owners}:beats``, ``tm:{own:<owner>}:sessions``), each show's kind
  read from its hash — at most :data:`SHOWS_COUNTED_MAX` shows;
- ``revenue_today`` — captured settlements since midnight UTC, per currency (the ledger);
- ``settlement_queue``, ``settlement_dead_letters``, ``webhook_dead_letters`` — lengths of the
  Redis streams;
- ``declines_today`` — declined captures since midnight UTC, by reason (the ledger).

The socket opens only for a live session (the cookie) of any role, from the console's own
origin (a page of another site can neither send the SameSite=Strict cookie nor pass the Origin
check: both refused at the handshake with HTTP 403); the session is checked again every
:data:`SESSION_RECHECK_S` seconds, so a logout or a disabled operator closes it (code 4401).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, time
from typing import Any, Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from clients.tickets import Role as ConnectionRole
from metering import keys
from metering.store import as_text
from server.console.routes import now, session_of
from server.runtime import Runtime, runtime

#: Seconds between two snapshots.
LIVE_INTERVAL_S: Final = 2.0
#: Seconds between two checks that the session is still live.
SESSION_RECHECK_S: Final = 30.0
#: Shows counted at most per snapshot (a bound on the Redis reads of one snapshot).
SHOWS_COUNTED_MAX: Final = 20_000
#: Billing owners read at most (a deployment has a handful of processes).
OWNERS_MAX: Final = 100
#: A billing owner silent this long is not counted (its sessions are being reaped).
OWNER_SILENT_MS: Final = 30_000
#: Close code for a socket whose session ended (the 4000 range is the application's). Before
#: the handshake, a missing session or a foreign origin is refused with HTTP 403.
CLOSE_LOGIN_REQUIRED: Final = 4401

_REVENUE_TODAY = """
SELECT currency, sum(captured_minor)::bigint AS amount_minor, count(*)::bigint AS settlements_n
FROM settlements WHERE outcome = 'captured' AND outcome_at >= %(since)s
GROUP BY 1 ORDER BY 1
"""
_DECLINES_TODAY = """
SELECT decline_reason AS reason, count(*)::bigint AS n FROM settlements
WHERE outcome = 'declined' AND outcome_at >= %(since)s
GROUP BY 1 ORDER BY 2 DESC, 1
"""


async def _shows(rt: Runtime) -> dict[str, int]:
    client = rt.store.client
    now_ms = rt.meter.clock.now_ms()
    owners = await client.zrangebyscore(
        keys.owners(), now_ms - OWNER_SILENT_MS, "+inf", start=0, num=OWNERS_MAX
    )
    members: list[str] = []
    for owner in owners:
        found = await client.smembers(keys.owner_sessions(as_text(owner)))
        members.extend(as_text(m) for m in found)
        if len(members) >= SHOWS_COUNTED_MAX:
            break
    kinds: dict[str, int] = {}
    for member in members[:SHOWS_COUNTED_MAX]:
        customer, session_id = member.split("/")[:2]
        kind = await client.hget(keys.session(customer, session_id), "kind")
        if kind is not None:
            name = as_text(kind)
            kinds[name] = kinds.get(name, 0) + 1
    return kinds


async def snapshot(rt: Runtime, tips_per_s: float) -> dict[str, Any]:
    """One snapshot of the live figures."""
    registry = rt.metrics.registry
    connections = {
        role.value: int(registry.get_sample_value("tipmeter_connections", {"role": role}) or 0)
        for role in ConnectionRole
    }
    midnight = datetime.combine(now(rt).date(), time.min, now(rt).tzinfo)
    async with rt.ledger.database.connection() as conn:
        revenue = await (await conn.execute(_REVENUE_TODAY, {"since": midnight})).fetchall()
        declines = await (await conn.execute(_DECLINES_TODAY, {"since": midnight})).fetchall()
    client = rt.store.client
    return {
        "at_ms": rt.meter.clock.now_ms(),
        "connections": connections,
        "tips_per_s": round(tips_per_s, 2),
        "shows": await _shows(rt),
        "revenue_today": [dict(row) for row in revenue],
        "settlement_queue": int(await client.xlen(keys.settle_queue())),
        "settlement_dead_letters": int(await client.xlen(keys.settle_dead_letters())),
        "webhook_dead_letters": int(await client.xlen(keys.webhook_dead_letters())),
        "declines_today": [dict(row) for row in declines],
        "since": midnight.isoformat(),
    }


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host", "")
    return origin is not None and origin.split("://", 1)[-1] == host


async def live_endpoint(websocket: WebSocket) -> None:
    """``/console/live``: a snapshot now, then one every :data:`LIVE_INTERVAL_S` seconds."""
    rt = runtime(websocket)
    if not _same_origin(websocket):
        await websocket.close()  # before accept(): HTTP 403
        return
    if await session_of(websocket, rt) is None:
        await websocket.close()
        return
    await websocket.accept()
    loop = asyncio.get_running_loop()
    tips_before = rt.metrics.tips.counts.get("applied", 0)
    measured_at = loop.time()
    checked_at = measured_at
    with contextlib.suppress(WebSocketDisconnect):
        rate = 0.0
        while True:
            await websocket.send_json(await snapshot(rt, rate))
            # A message from the page, or the interval passing: whichever comes first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(websocket.receive_text(), timeout=LIVE_INTERVAL_S)
            tips_now = rt.metrics.tips.counts.get("applied", 0)
            elapsed = max(loop.time() - measured_at, 1e-3)
            rate = (tips_now - tips_before) / elapsed
            tips_before, measured_at = tips_now, loop.time()
            if loop.time() - checked_at >= SESSION_RECHECK_S:
                checked_at = loop.time()
                if await session_of(websocket, rt) is None:
                    await websocket.close(CLOSE_LOGIN_REQUIRED)
                    return
