"""Choosing the gateway a worker talks to, by name (``TIPMETER_GATEWAY``)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from metering.clock import Clock
from settlement.errors import SettlementMisuse
from settlement.gateway import Gateway
from settlement.sandbox import SandboxGateway
from settlement.sandbox_http import HttpGateway

#: The gateway kinds a worker can be configured with.
GATEWAY_KINDS: Final = ("sandbox", "sandbox-http", "stripe")
#: The in-process sandbox's journal, in the data folder: its holds survive a restart.
SANDBOX_JOURNAL: Final = "sandbox.jsonl"


def create_gateway(
    kind: str,
    *,
    clock: Clock,
    url: str | None = None,
    timeout_s: float = 10.0,
    stripe_api_key: str | None = None,
    journal_path: Path | None = None,
) -> Gateway:
    """Build the gateway named ``kind``.

    ``sandbox`` is in-process (useful only where the same process also authorizes the holds,
    as the embedded server does), its record kept in ``journal_path``; ``sandbox-http`` calls
    a ``tipmeter sandbox-gateway`` at ``url``; ``stripe`` uses Stripe PaymentIntents with
    manual capture.
    """
    if kind == "sandbox":
        return SandboxGateway(clock=clock, journal_path=journal_path)
    if kind == "sandbox-http":
        if not url:
            raise SettlementMisuse("the sandbox-http gateway needs TIPMETER_GATEWAY_URL")
        return HttpGateway(url, timeout_s=timeout_s)
    if kind == "stripe":
        if not stripe_api_key:
            raise SettlementMisuse("the stripe gateway needs TIPMETER_STRIPE_API_KEY")
        from settlement.stripe_gateway import StripeGateway

        return StripeGateway(stripe_api_key, timeout_s=timeout_s)
    raise SettlementMisuse(f"unknown gateway {kind!r}; one of {', '.join(GATEWAY_KINDS)}")


def close_gateway(gateway: Gateway) -> None:
    """Release what a gateway holds open (the sandbox's journal); nothing for the others."""
    if isinstance(gateway, SandboxGateway):
        gateway.close()
