"""Graceful drain on SIGTERM, for deploys behind a load balancer.

1. ``/readyz`` answers 503 at once, so the load balancer stops sending new clients.
2. After ``TIPMETER_DRAIN_DELAY_S`` (time for the balancer to notice), every client is sent a
   ``drain`` message — reconnect after a random delay of up to five seconds, so they spread over
   the other servers — and its connection is closed with 1001 (going away).
3. The process exits once no connection is left, and never later than ``TIPMETER_DRAIN_S_MAX``
   after the signal. A second SIGTERM or SIGINT exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

from server.runtime import Runtime
from server.ws import drain_connections

log = logging.getLogger("tipmeter.drain")


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM drains instead of stopping at once."""

    def __init__(self, config: uvicorn.Config, runtime_of: Callable[[], Runtime | None]) -> None:
        super().__init__(config)
        self._runtime_of = runtime_of
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        """Remember the loop (signals arrive outside it), then serve."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does; once listening, say so, and print the embedded default's
        introduction (``app.state.banner``), so it is only ever shown for a running server."""
        await super().startup(sockets)
        if not self.started:
            return
        names = [s.getsockname() for s in (sockets or [])]
        log.info("listening", extra={"fields": {"sockets": [f"{n[0]}:{n[1]}" for n in names]}})
        banner = getattr(getattr(self.config.app, "state", None), "banner", None)
        if isinstance(banner, str):
            sys.stdout.write(banner)
            sys.stdout.flush()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM: drain. Anything else, or a second signal: uvicorn's own exit."""
        rt = self._runtime_of()
        if sig != signal.SIGTERM or self._drain is not None or rt is None or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._start_drain, rt)

    def _start_drain(self, rt: Runtime) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit(rt))

    async def _drain_then_exit(self, rt: Runtime) -> None:
        settings = rt.settings
        deadline = time.monotonic() + settings.drain_s_max
        rt.draining = True
        log.info("draining", extra={"fields": {"connections": len(rt.connections)}})
        await asyncio.sleep(min(settings.drain_delay_s, settings.drain_s_max))
        told = drain_connections(rt)
        if rt.connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    await rt.no_connections.wait()
        log.info(
            "drained",
            extra={"fields": {"told_to_reconnect": told, "left": len(rt.connections)}},
        )
        self.should_exit = True
