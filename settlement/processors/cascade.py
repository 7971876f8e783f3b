"""Placing a hold at the routed processors: the first that approves holds the tab.

The processors are asked in the routing's order (:mod:`settlement.processors.routing`). After
a decline, the next one is asked only when the registry allows cascading
(``TIPMETER_PROCESSORS_CASCADE_MAX`` further processors) and the decline is *soft* by the
card-network table (:func:`settlement.retry_rules.may_cascade`): a hard decline (lost, stolen,
fraud, "do not try again" …) describes the card, and trying it elsewhere would break the
networks' rules. An unanswered call stops the cascade too: the hold may have been placed, and
the caller retries the same request, which asks the same processors with the same keys.

A customer action (3-D Secure) ends the cascade at that processor: the customer completes it
there, and the repeated request finds the hold approved.

Every processor is asked with the same idempotency key: keys are per processor, and the order
is a function of the tab id, so a retry replays each processor's first answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from settlement.gateway import Hold, Outcome
from settlement.processors.registry import ProcessorRegistry
from settlement.processors.routing import NoProcessor, RouteRequest
from settlement.retry_rules import rule_for

#: Longest record of attempts kept on a tab (bounded by the processors a deployment may name).
TRIED_CHARS_MAX = 1_024


@dataclass(frozen=True, slots=True)
class Attempt:
    """One processor asked for the hold, and what it answered."""

    processor: str
    outcome: Outcome
    decline_reason: str = ""

    def __str__(self) -> str:
        reason = f":{self.decline_reason}" if self.decline_reason else ""
        return f"{self.processor}:{self.outcome.value}{reason}"


@dataclass(frozen=True, slots=True)
class RoutedHold:
    """The last answer, the processor that gave it, and every attempt in order."""

    processor: str
    hold: Hold
    tried: tuple[Attempt, ...]

    @property
    def tried_text(self) -> str:
        """The attempts as recorded on the tab: ``name:outcome[:reason]``, ``;``-separated."""
        return ";".join(str(a) for a in self.tried)[:TRIED_CHARS_MAX]


async def place_hold(
    registry: ProcessorRegistry,
    request: RouteRequest,
    *,
    idempotency_key: str,
    payment_method: str,
    amount_minor: int,
    currency: str,
) -> RoutedHold:
    """Ask the routed processors for a hold (see the module docstring).

    Returns the approval, the customer action, or the last decline; GatewayError from a
    processor propagates (the caller retries the same request). NoProcessor if none is eligible.
    """
    order = registry.route(request)[: 1 + registry.cascade_max]
    tried: list[Attempt] = []
    routed: RoutedHold | None = None
    for name in order:
        hold = await registry.for_processor(name).authorize(
            idempotency_key=idempotency_key,
            payment_method=payment_method,
            amount_minor=amount_minor,
            currency=currency,
        )
        reason = hold.decline_reason.value if hold.decline_reason is not None else ""
        tried.append(Attempt(name, hold.outcome, reason))
        routed = RoutedHold(name, hold, tuple(tried))
        # The one table of card-network rules decides, with the network's advice when sent.
        cascades = rule_for(reason or "unrecognized", mastercard_advice=hold.advice_code).cascades
        if hold.outcome is not Outcome.DECLINED or not cascades:
            break
    if routed is None:
        raise NoProcessor("no processor to ask")  # route() never answers an empty order
    return routed
