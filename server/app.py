"""The Starlette application and its lifespan."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from metering.clock import Clock
from metering.meter import CORE_SCRIPTS, Meter, open_store
from server import api, demo_api, feed, health
from server.config import Settings
from server.errors import ConfigError
from server.gateways import create_gateway
from server.hub import Hub
from server.metrics import Metrics
from server.runtime import Runtime, runtime
from server.scheduler import Scheduler
from server.tickets import TicketGate
from server.ws import websocket_endpoint

log = logging.getLogger("tipmeter.app")


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, *, clock: Clock | None = None, demo: bool = False) -> Starlette:
    """Build the app. Redis is connected (and the scripts loaded) when its lifespan starts.

    ``demo`` (the embedded default) prints how to connect once the app is up, and turns on the
    web pages' demo backend unless ``TIPMETER_DEMO_API`` says otherwise.
    """
    if not settings.ticket_secrets or not settings.api_keys:
        raise ConfigError(
            "set TIPMETER_TICKET_SECRETS and TIPMETER_API_KEYS (every process must share them)"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        target = settings.redis_target()
        store = await open_store(target, CORE_SCRIPTS)
        metrics = Metrics()
        meter = Meter(store, clock=clock, limits=settings.limits(), observe=metrics.observe_flush)
        hub = Hub(meter, target, metrics)
        scheduler = Scheduler(meter, metrics, tick_ms=settings.tick_ms)
        rt = Runtime(
            settings=settings,
            store=store,
            meter=meter,
            hub=hub,
            scheduler=scheduler,
            tickets=TicketGate(
                store,
                meter.clock,
                secrets_=settings.ticket_secrets,
                issuers=settings.ticket_issuers,
                ttl_ms_max=settings.ticket_ttl_s_max * 1000,
            ),
            gateway=create_gateway(settings, meter.clock),
            metrics=metrics,
        )
        app.state.runtime = rt
        scheduler.start()
        log.info(
            "ready",
            extra={"fields": {"redis_cluster": store.is_cluster, "owner": scheduler.owner}},
        )
        if demo:
            from server.demo import introduce

            sys.stdout.write(await introduce(rt))
            sys.stdout.flush()
        try:
            yield
        finally:
            await scheduler.stop()
            await hub.stop()
            await meter.aclose()
            await store.close()

    routes: list[BaseRoute] = [
        Route("/livez", health.livez, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        WebSocketRoute("/ws", websocket_endpoint),
        *api.routes(),
        *feed.routes(),
        *demo_api.routes(demo_enabled=demo_api.enabled(settings, embedded=demo)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
