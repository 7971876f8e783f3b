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


@dataclass
class FanOut:
    """What an open-loop fan-out run measured: tips sent, their acknowledgements, and how long
    each took to reach the model's console (from the viewer's send)."""

    sent: int = 0
    acked: int = 0
    refused: int = 0
    delivered_ms: list[float] = field(default_factory=list)


async def _pace_tips(
    ws: ClientConnection,
    prefix: str,
    room: str,
    interval_s: float,
    offset_s: float,
    until: float,
    sent_at: dict[str, float],
    run: FanOut,
) -> None:
    """Send a tip every ``interval_s`` (open loop: never waiting for an answer) until ``until``."""
    loop = asyncio.get_running_loop()
    due = loop.time() + offset_s
    n = 0
    while due < until:
        await asyncio.sleep(max(due - loop.time(), 0))
        n += 1
        tip_id = f"{prefix}-{n}"
        frame = orjson.dumps(
            {"type": "tip", "id": tip_id, "room": room, "amount_minor": 1, "currency": "USD"}
        ).decode()
        sent_at[tip_id] = time.perf_counter()
        await ws.send(frame)
        run.sent += 1
        due += interval_s


async def _count_answers(ws: ClientConnection, run: FanOut) -> None:
    async for frame in ws:
        kind = orjson.loads(frame).get("type")
        if kind == "result":
            run.acked += 1
        elif kind == "error":
            run.refused += 1


async def _watch_room(
    ws: ClientConnection, sent_at: dict[str, float], run: FanOut, measure_from: float
) -> None:
    async for frame in ws:
        message = orjson.loads(frame)
        if message.get("type") != "event":
            continue
        started = sent_at.pop(message["data"]["tip_id"], None)
        if started is not None and time.monotonic() >= measure_from:
            run.delivered_ms.append((time.perf_counter() - started) * 1000)


async def fan_out(
    viewer_urls: list[str],
    model_url: str,
    *,
    room: str,
    tips_per_s: float,
    seconds: float,
    warmup_s: float,
) -> FanOut:
    """Viewers (on one server) tip ``room`` at ``tips_per_s`` in all, spread evenly; a model's
    console (on another) follows the room. Returns the delivery latencies after ``warmup_s``."""
    model = await open_connection(model_url, welcome=True)
    await model.send(orjson.dumps({"type": "subscribe", "id": "sub", "room": room}).decode())
    while orjson.loads(await model.recv()).get("type") != "subscribed":
        pass
    viewers = await asyncio.gather(*(open_connection(url, welcome=True) for url in viewer_urls))
    run = FanOut()
    sent_at: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    until = loop.time() + warmup_s + seconds
    interval_s = len(viewers) / tips_per_s
    watcher = asyncio.create_task(_watch_room(model, sent_at, run, time.monotonic() + warmup_s))
    readers = [asyncio.create_task(_count_answers(ws, run)) for ws in viewers]
    try:
        await asyncio.gather(
            *(
                _pace_tips(
                    ws,
                    f"v{i}",
                    room,
                    interval_s,
                    i * interval_s / len(viewers),
                    until,
                    sent_at,
                    run,
                )
                for i, ws in enumerate(viewers)
            )
        )
        await asyncio.sleep(1.0)  # the last tips' deliveries
    finally:
        for task in (watcher, *readers):
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in (model, *viewers)), return_exceptions=True)
        await asyncio.gather(watcher, *readers, return_exceptions=True)
    return run


async def hold_idle(
    urls: list[str], *, welcome: bool, concurrency: int = 200
) -> list[ClientConnection]:
    """Open one connection per URL (``concurrency`` handshakes at a time) and return them open."""
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str) -> ClientConnection:
        async with gate:
            return await open_connection(url, welcome)

    return list(await asyncio.gather(*(one(url) for url in urls)))


async def _count_events(ws: ClientConnection, counter: list[int]) -> None:
    async for frame in ws:
        if orjson.loads(frame).get("type") == "event":
            counter[0] += 1


async def watch_room(urls: list[str], room: str) -> tuple[list[ClientConnection], list[int]]:
    """Connect viewers that follow ``room`` and count the events they receive (in the returned
    one-element list, updated in the background until the connections close)."""
    watchers = await hold_idle(urls, welcome=True)
    subscribe = orjson.dumps({"type": "subscribe", "id": "watch", "room": room}).decode()
    for ws in watchers:
        await ws.send(subscribe)
    counter = [0]
    for ws in watchers:
        task = asyncio.create_task(_count_events(ws, counter))
        _WATCHING.add(task)
        task.add_done_callback(_WATCHING.discard)
    return watchers, counter


_WATCHING: set[asyncio.Task[None]] = set()


async def tip_steadily(url: str, room: str, tips_per_s: float, seconds: float) -> int:
    """One viewer tips ``room`` at ``tips_per_s`` for ``seconds`` (answers read and dropped)."""
    ws = await open_connection(url, welcome=True)
    run = FanOut()
    reader = asyncio.create_task(_count_answers(ws, run))
    loop = asyncio.get_running_loop()
    try:
        await _pace_tips(ws, "steady", room, 1 / tips_per_s, 0.0, loop.time() + seconds, {}, run)
        await asyncio.sleep(0.5)
    finally:
        reader.cancel()
        await ws.close()
        await asyncio.gather(reader, return_exceptions=True)
    return run.sent
