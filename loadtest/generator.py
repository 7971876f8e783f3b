"""The benchmark's load generator: raw WebSocket clients speaking the protocol's JSON frames.

Lean on purpose (a pre-built frame per tip, no SDK bookkeeping), so that on a small machine the
generator takes as little CPU as it can from the servers it measures; and identical for the
product and the baseline, so their figures compare.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Final

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

JSON: Final = Subprotocol("tipmeter.v1.json")


@dataclass
class Tally:
    """What a run of clients measured."""

    acked: int = 0
    refused: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def open_connection(url: str, welcome: bool) -> ClientConnection:
    """Connect (JSON subprotocol, no compression) and, for the product, read the welcome."""
    ws = await connect(url, subprotocols=[JSON], compression=None, max_size=2**20, open_timeout=60)
    if welcome:
        await ws.recv()
    return ws


async def _tip_until(
    ws: ClientConnection, prefix: str, room: str, deadline: float, measure_from: float, tally: Tally
) -> None:
    n = 0
    while time.monotonic() < deadline:
        n += 1
        tip_id = f"{prefix}-{n}"
        frame = orjson.dumps(
            {"type": "tip", "id": tip_id, "room": room, "amount_minor": 1, "currency": "USD"}
        ).decode()
        started = time.perf_counter()
        await ws.send(frame)
        while True:
            reply = orjson.loads(await ws.recv())
            if reply.get("id") == tip_id:
                break
        if time.monotonic() >= measure_from:
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            if reply["type"] == "result":
                tally.acked += 1
            else:
                tally.refused += 1


async def closed_loop(
    urls: list[str], *, room: str, seconds: float, warmup_s: float, welcome: bool
) -> tuple[Tally, float]:
    """One connection per URL tips as fast as its acknowledgements come back, for ``seconds``
    after ``warmup_s``. Returns the tally and the measured window's length."""
    sockets = await asyncio.gather(*(open_connection(url, welcome) for url in urls))
    tally = Tally()
    start = time.monotonic()
    measure_from = start + warmup_s
    deadline = measure_from + seconds
    try:
        await asyncio.gather(
            *(
                _tip_until(ws, f"c{i}", room, deadline, measure_from, tally)
                for i, ws in enumerate(sockets)
            )
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
    return tally, seconds
