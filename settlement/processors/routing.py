"""Which processors may serve a new tab, and in which order (pure; no I/O).

A processor is *eligible* for a request when it sells the product (``tab`` or
``membership``), serves the currency and the customer's country (an unset list serves all),
and has a weight above zero — or is the one the cam site named. The order:

1. the processor the cam site named, if any (it must be eligible but for its weight);
2. the other eligible processors by weighted rendezvous hashing on the route key (the tab id):
   each processor draws ``-ln(u) / weight`` from a hash of (route key, name), lowest first.

The hash makes the order a function of the tab id alone: a retry of the same open request
(same Idempotency-Key, hence same tab id) asks the same processors in the same order, so the
processors' own idempotency keys replay the first answers and no second hold is placed. Over
many tabs each processor gets a share proportional to its weight, and adding or removing one
processor moves only the tabs it wins or held.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from settlement.errors import SettlementError
from settlement.processors.settings import ProcessorSpec


class NoProcessor(SettlementError):
    """No configured processor may serve this request (the message says why)."""


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What is known when a tab (or a membership) is opened."""

    #: Fixes the order across retries: the tab id.
    route_key: str
    currency: str
    #: The customer's country, ISO 3166 alpha-2 ("" unknown: only processors serving every
    #: country are eligible).
    country: str = ""
    product: str = "tab"
    #: The processor the cam site chose ("" to let the routing choose).
    preferred: str = ""


def serves(spec: ProcessorSpec, request: RouteRequest) -> bool:
    """Whether ``spec`` sells the product in the currency to the customer's country."""
    return (
        (not spec.products or request.product in spec.products)
        and (not spec.currencies or request.currency in spec.currencies)
        and (not spec.countries or request.country in spec.countries)
    )


def _draw(route_key: str, spec: ProcessorSpec) -> float:
    digest = hashlib.sha256(f"{route_key}\x00{spec.name}".encode()).digest()
    unit = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 1)  # in (0, 1)
    return -math.log(unit) / spec.weight


def route(specs: Sequence[ProcessorSpec], request: RouteRequest) -> tuple[str, ...]:
    """The processors to ask, in order (see the module docstring); NoProcessor if none."""
    order: list[str] = []
    if request.preferred:
        chosen = next((s for s in specs if s.name == request.preferred), None)
        if chosen is None:
            raise NoProcessor(f"no processor named {request.preferred!r}")
        if not serves(chosen, request):
            raise NoProcessor(
                f"processor {chosen.name!r} does not sell {request.product} in "
                f"{request.currency} to country {request.country or '(unknown)'}"
            )
        order.append(chosen.name)
    ranked = sorted(
        (s for s in specs if s.weight > 0 and s.name not in order and serves(s, request)),
        key=lambda s: _draw(request.route_key, s),
    )
    order.extend(s.name for s in ranked)
    if not order:
        raise NoProcessor(
            f"no processor sells {request.product} in {request.currency} to country "
            f"{request.country or '(unknown)'}"
        )
    return tuple(order)
