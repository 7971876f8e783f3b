"""The baseline: the least a server on this stack must do to acknowledge a tip.

A minimal Starlette WebSocket endpoint (uvicorn, ``websockets-sansio``, no permessage-deflate,
JSON frames) that answers each ``tip`` frame after one cap-check Lua call, with the calls of all
connections coalesced into one round trip per flush — the same machinery the product's tips use
(:class:`metering.batch.Coalescer`, :meth:`metering.store.Store.call_batched`). No tickets, no
idempotency, no lines, no room events, no fan-out: every figure of the product is reported as a
ratio against this floor, measured in the same run on the same machine.

    .venv/bin/python -m loadtest.baseline --port 8300 --redis-url redis://127.0.0.1:6379/0

It answers ``{"type": "result", "id": …, "status": "applied"}`` (or ``error`` ``over_cap``), so
the benchmark's load generator drives it exactly as it drives the product.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from metering.batch import Coalescer
from metering.store import BatchedScript, LuaScript, RedisTarget, Store, create_client

CAP_CHECK: Final = LuaScript.load("cap_check", directory=Path(__file__).parent / "lua", preludes=())
CAP_MINOR: Final = 10**12


CAP_CHECK_BATCHED: Final[BatchedScript[tuple[str, int], bool]] = BatchedScript(
    script=CAP_CHECK,
    keys_per_item=1,
    args_per_item=1,
    item_keys=lambda item: (item[0],),
    item_args=lambda item: (item[1],),
    decode=lambda item, reply: reply == 1,
)


def create_app(redis_url: str) -> Starlette:
    """The baseline app."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(create_client(RedisTarget(url=redis_url)), [CAP_CHECK])
        await store.load_scripts()

        async def run(items: Sequence[tuple[str, int]]) -> list[bool]:
            return await store.call_batched(CAP_CHECK_BATCHED, (CAP_MINOR,), items)

        state["coalescer"] = Coalescer(run)
        try:
            yield
        finally:
            await store.close()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="tipmeter.v1.json")
        coalescer: Coalescer[tuple[str, int], bool] = state["coalescer"]
        key = f"baseline:{{{secrets.token_hex(6)}}}"
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame = orjson.loads(message.get("text") or message.get("bytes") or b"{}")
            applied = await coalescer.submit((key, int(frame["amount_minor"])))
            reply: dict[str, Any] = {"type": "result", "id": frame["id"], "status": "applied"}
            if not applied:
                reply = {"type": "error", "id": frame["id"], "code": "over_cap", "message": ""}
            await websocket.send_text(orjson.dumps(reply).decode())

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    """Serve the baseline."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.redis_url),
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
