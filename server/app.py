"""The Starlette application and its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from metering.clock import Clock
from metering.meter import CORE_SCRIPTS, Meter, open_store
from server import (
    api,
    catalog_api,
    collection_api,
    demo_api,
    feed,
    health,
    openapi,
    overlay,
    paylinks,
    refund_requests_api,
    refunds_api,
    subscriptions_api,
)
from server.backlog_metrics import BacklogGauges
from server.config import Settings
from server.consent_push import SWEEP_S_DEFAULT as CONSENT_SWEEP_S
from server.consent_push import ConsentPush
from server.console.mount import console_routes
from server.errors import ConfigError
from server.hub import Hub
from server.metrics import Metrics
from server.pg_listen import PgListener
from server.runtime import Runtime, runtime
from server.scheduler import Scheduler, new_owner_id
from server.subscription_push import SubscriptionPush
from server.tickets import TicketGate
from server.triggers import CapWatch
from server.ws import websocket_endpoint
from settlement.ledger.ledger import Ledger
from settlement.runner import settings_worker
from settlement.scripts import SETTLEMENT_SCRIPTS

log = logging.getLogger("tipmeter.app")


async def _cancelled(task: asyncio.Task[None], then: Awaitable[None]) -> None:
    """Cancel ``task`` (a loop that waits on its own), wait for it to end, then ``then``."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await then


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition of this process's metrics, for ``TIPMETER_METRICS_CLIENTS`` only."""
    rt = runtime(request)
    if not rt.settings.metrics_allowed(request.client.host if request.client else None):
        return api.ApiError(
            403, "metrics_not_allowed", "set TIPMETER_METRICS_CLIENTS to read /metrics from here"
        ).response()
    gauges = getattr(request.app.state, "backlog_gauges", None)
    if not isinstance(gauges, BacklogGauges):
        gauges = request.app.state.backlog_gauges = BacklogGauges(rt.metrics.registry)
    try:
        await gauges.refresh(rt.store, rt.meter.clock.now_ms())
    except Exception as exc:  # Redis away: the rest of the metrics still answer
        log.warning("backlog gauges not refreshed", extra={"fields": {"error": repr(exc)}})
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    demo: bool = False,
    migrate: bool = False,
) -> Starlette:
    """Build the app. Redis is connected (and the scripts loaded) when its lifespan starts.

    ``demo`` (the embedded default) prints how to connect once the app is up, and turns on the
    web pages' demo backend and the in-process settlement worker unless ``TIPMETER_DEMO_API``
    and ``TIPMETER_WORKER`` say otherwise. ``migrate`` applies missing ledger migrations at
    start (the embedded database); otherwise a schema behind this code stops the start with
    "run tipmeter migrate".
    """
    if not settings.ticket_secrets or not settings.api_keys:
        raise ConfigError(
            "set TIPMETER_TICKET_SECRETS and TIPMETER_API_KEYS (every process must share them)"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        target = settings.redis_target()
        ledger = await Ledger.open(settings.database_config(), migrate_schema=migrate)
        store = await open_store(target, (*CORE_SCRIPTS, *SETTLEMENT_SCRIPTS))
        metrics = Metrics()
        meter = Meter(store, clock=clock, limits=settings.limits(), observe=metrics.observe_flush)
        # One registry serves the holds the API places and the worker's captures: the
        # in-process sandbox keeps its holds in this process (and its journal in the data
        # folder, so a restart loses none), so both must share it.
        processors = settings.processor_registry(meter.clock, durable=True)
        owner = new_owner_id()
        hub = Hub(meter, target, metrics, owner)
        cap_watch = CapWatch(
            store,
            meter.clock,
            grace_ms=settings.settle_cap_grace_ms,
            tip_min_minor=settings.tip_min_minor,
        )
        scheduler = Scheduler(
            meter, metrics, tick_ms=settings.tick_ms, on_exhausted=cap_watch.exhausted, owner=owner
        )
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
            processors=processors,
            ledger=ledger,
            metrics=metrics,
            cap_watch=cap_watch,
        )
        app.state.runtime = rt
        scheduler.start()
        # h-refcol: refunds waiting for a model's consent, pushed live to her console; issue
        # 16: a member's subscriptions, live on her devices. One listening connection.
        consent = ConsentPush(
            ledger.database.config.url, lambda: refunds_api.service(app.state, rt)
        )
        rt.consent = consent
        memberships = SubscriptionPush(
            lambda: subscriptions_api.service_of(rt),
            lambda sid: subscriptions_api.view_of(rt, sid),
        )
        rt.memberships = memberships
        listener = PgListener(
            ledger.database.config.url, (consent, memberships), idle_s=CONSENT_SWEEP_S
        )
        consent_stop = asyncio.Event()
        consent_task = asyncio.create_task(listener.run(consent_stop), name="pg-listener")
        worker_stop = asyncio.Event()
        worker_task: asyncio.Task[None] | None = None
        if settings.worker_in_process(embedded=demo):
            worker = settings_worker(settings, meter, processors, ledger)
            worker_task = asyncio.create_task(worker.run(worker_stop), name="settlement-worker")
        # Purchases (issue 17): catalog requests not done in time expire.
        expiry_task = asyncio.create_task(
            catalog_api.expire_requests(rt, worker_stop), name="request-expiry"
        )
        log.info(
            "ready",
            extra={
                "fields": {
                    "redis_cluster": store.is_cluster,
                    "owner": scheduler.owner,
                    "settlement_worker": worker_task is not None,
                }
            },
        )
        if demo:
            from server.demo import introduce

            # Printed by the server once it listens (server.drain), not now: with the port
            # taken, a newcomer would read credentials of a server that never ran.
            app.state.banner = await introduce(rt)
        try:
            yield
        finally:
            worker_stop.set()
            consent_stop.set()
            # Each step runs whatever the one before met: Redis may have gone and come back
            # (connections torn down under redis-py), and a shutdown must still release all.
            steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("settlement worker", lambda: worker_task if worker_task else asyncio.sleep(0)),
                ("request expiry", lambda: expiry_task),
                ("scheduler", scheduler.stop),
                ("refund consent", lambda: _cancelled(consent_task, consent.aclose())),
                ("memberships", memberships.aclose),
                ("cap watch", cap_watch.aclose),
                ("hub", hub.stop),
                ("meter", meter.aclose),
                ("store", store.close),
                ("ledger", ledger.close),
            ]
            for name, step in steps:
                try:
                    await step()
                except Exception as exc:
                    log.warning(
                        "shutdown step failed", extra={"fields": {"step": name, "error": repr(exc)}}
                    )
            processors.close()

    routes: list[BaseRoute] = [
        Route("/livez", health.livez, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        WebSocketRoute("/ws", websocket_endpoint),
        *api.routes(),
        *openapi.routes(),
        *refunds_api.routes(),
        *refund_requests_api.routes(demo_enabled=demo_api.enabled(settings, embedded=demo)),
        *feed.routes(),
        *overlay.routes(),
        *demo_api.routes(demo_enabled=demo_api.enabled(settings, embedded=demo)),
        *collection_api.routes(),
        *catalog_api.routes(),  # purchases (issue 17)
        *paylinks.routes(),
        *subscriptions_api.routes(),
        *console_routes(),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={Exception: api.internal_error}
    )
