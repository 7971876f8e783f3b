"""What the app holds while it runs: built in the lifespan, never in module globals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from metering.meter import Meter
from metering.store import Store
from server.config import Settings
from server.metrics import Metrics
from server.tickets import TicketGate
from settlement.gateway import Gateway
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry

if TYPE_CHECKING:
    from server.connection import Connection
    from server.consent_push import ConsentPush
    from server.hub import Hub
    from server.scheduler import Scheduler
    from server.subscription_push import SubscriptionPush
    from server.triggers import CapWatch


@dataclass(slots=True)
class Runtime:
    """The resources of one running app."""

    settings: Settings
    store: Store
    meter: Meter
    hub: Hub
    scheduler: Scheduler
    tickets: TicketGate
    #: Every processor; each tab's calls go to the one named on it.
    processors: ProcessorRegistry
    #: The ledger of record (PostgreSQL).
    ledger: Ledger
    metrics: Metrics
    cap_watch: CapWatch
    connections: set[Connection] = field(default_factory=set)
    #: Set whenever the last connection closes (the drain waits on it).
    no_connections: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    #: The models' consoles' refund consent (h-refcol); None until the lifespan starts it.
    consent: ConsentPush | None = None
    #: A viewer's subscriptions, pushed live (issue 16); None until the lifespan starts it.
    memberships: SubscriptionPush | None = None

    @property
    def gateway(self) -> Gateway:
        """The first processor (the demo's, and a one-processor deployment's only one)."""
        return self.processors.default


def runtime(conn: HTTPConnection) -> Runtime:
    """The Runtime of the app serving ``conn`` (set by the lifespan)."""
    value = getattr(conn.app.state, "runtime", None)
    if not isinstance(value, Runtime):
        raise RuntimeError("the app's lifespan has not run: serve it with lifespan='on'")
    return value
