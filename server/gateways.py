"""The payment gateway this server authorizes holds through (``TIPMETER_GATEWAY``)."""

from __future__ import annotations

from metering.clock import Clock
from server.config import Settings
from server.errors import ConfigError
from settlement.gateway import Gateway
from settlement.sandbox import SandboxGateway


def create_gateway(settings: Settings, clock: Clock) -> Gateway:
    """Build the configured gateway."""
    if settings.gateway == "sandbox":
        return SandboxGateway(clock=clock)
    raise ConfigError(f"unknown gateway {settings.gateway!r}")
