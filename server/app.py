"""The Starlette application and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from metering.clock import Clock
from metering.meter import Meter, open_store
from metering.scripts import METERING_SCRIPTS
from server import health
from server.config import Settings
from server.runtime import Runtime

log = logging.getLogger("tipmeter.app")


def create_app(settings: Settings, *, clock: Clock | None = None) -> Starlette:
    """Build the app. Redis is connected (and the scripts loaded) when its lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings.redis_target(), METERING_SCRIPTS)
        meter = Meter(store, clock=clock, limits=settings.limits())
        app.state.runtime = Runtime(settings=settings, store=store, meter=meter)
        log.info("ready", extra={"fields": {"redis_cluster": store.is_cluster}})
        try:
            yield
        finally:
            await meter.aclose()
            await store.close()

    routes = [
        Route("/livez", health.livez, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
