"""What the app holds while it runs: built in the lifespan, never in module globals."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from metering.meter import Meter
from metering.store import Store
from server.config import Settings


@dataclass(slots=True)
class Runtime:
    """The resources of one running app: settings, the Redis store and the money core."""

    settings: Settings
    store: Store
    meter: Meter
    draining: bool = False
    notes: dict[str, str] = field(default_factory=dict)


def runtime(conn: HTTPConnection) -> Runtime:
    """The Runtime of the app serving ``conn`` (set by the lifespan)."""
    value = getattr(conn.app.state, "runtime", None)
    if not isinstance(value, Runtime):
        raise RuntimeError("the app's lifespan has not run: serve it with lifespan='on'")
    return value
