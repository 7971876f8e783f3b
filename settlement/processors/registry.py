"""The kinds of processor, and the registry that builds a deployment's processors.

Adding a processor is one adapter module and one line in :data:`KINDS` (its own fields and its
builder); config, app and worker runner only ever see the registry. The registry answers the
two questions the rest of the product asks:

- *which processors may hold a new tab, in order* (:meth:`ProcessorRegistry.route`, see
  :mod:`settlement.processors.routing`);
- *which gateway holds this tab* (:meth:`ProcessorRegistry.for_processor`): every call after
  the hold — increment, capture, void, refund, lookup — goes to the processor named on the tab,
  whatever the routing would say now. A tab with no name (opened before processors had names)
  belongs to the first processor listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from metering.clock import Clock
from settlement.errors import SettlementMisuse
from settlement.gateway import Capabilities, DeclineReason, Gateway, GatewayUnavailable
from settlement.processors.routing import RouteRequest, route
from settlement.processors.settings import DEFAULT_NAME, ProcessorSpec
from settlement.sandbox import SandboxGateway
from settlement.sandbox_http import HttpGateway

#: Further processors a declined hold may be tried at, by default (0: no cascading).
CASCADE_MAX_DEFAULT: Final = 0
#: Bound on one processor call when neither the processor nor the deployment names one.
TIMEOUT_S_DEFAULT: Final = 20.0


class UnknownProcessor(GatewayUnavailable):
    """A tab names a processor this deployment no longer configures.

    An unavailability, not a request error: the tab's hold is at that processor and nowhere
    else, so its settlement waits (uncounted) until the processor's settings are restored.
    """


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What every builder gets besides the processor's spec."""

    clock: Clock
    timeout_s: float
    #: Where in-process processors keep their record (None: in memory only).
    data_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of processor: the fields of its own, and how to build it."""

    fields: tuple[str, ...]
    build: Callable[[ProcessorSpec, BuildContext], Gateway]
    summary: str


def _on(spec: ProcessorSpec, field_name: str, default: bool) -> bool:
    raw = spec.option(field_name)
    if raw is None:
        return default
    if raw not in ("on", "off"):
        raise SettlementMisuse(f"{spec.variable(field_name)}={raw!r}: on or off")
    return raw == "on"


def _sandbox(spec: ProcessorSpec, ctx: BuildContext) -> Gateway:
    raw = spec.option("DECLINE_HOLDS")
    try:
        decline = DeclineReason(raw) if raw else None
    except ValueError:
        raise SettlementMisuse(
            f"{spec.variable('DECLINE_HOLDS')}={raw!r}: a decline reason such as do_not_honor"
        ) from None
    return SandboxGateway(
        clock=ctx.clock,
        decline_holds=decline,
        incremental=_on(spec, "INCREMENTAL", True),
        journal_path=None if ctx.data_dir is None else ctx.data_dir / sandbox_journal(spec.name),
    )


#: The in-process sandbox's journal in the data folder: its holds survive a restart.
SANDBOX_JOURNAL: Final = "sandbox.jsonl"


def sandbox_journal(name: str) -> str:
    """The journal file of the in-process sandbox processor ``name`` (one file each)."""
    return SANDBOX_JOURNAL if name == "sandbox" else f"sandbox-{name}.jsonl"


def _sandbox_http(spec: ProcessorSpec, ctx: BuildContext) -> Gateway:
    capabilities = Capabilities(
        incremental_authorization=_on(spec, "INCREMENTAL", True), customer_action=True
    )
    return HttpGateway(spec.require("URL"), timeout_s=ctx.timeout_s, capabilities=capabilities)


def _stripe(spec: ProcessorSpec, ctx: BuildContext) -> Gateway:
    from settlement.processors.stripe import StripeGateway

    return StripeGateway(
        spec.require("API_KEY"),
        timeout_s=ctx.timeout_s,
        base_url=spec.option("URL"),
        clock=ctx.clock,
    )


def _segpay(spec: ProcessorSpec, ctx: BuildContext) -> Gateway:
    from settlement.processors.segpay import SegpayGateway

    return SegpayGateway(
        spec.require("URL"),
        eticket_id=spec.require("ETICKET_ID"),
        timeout_s=ctx.timeout_s,
        clock=ctx.clock,
    )


#: Every kind of processor, by the name ``..._KIND`` takes.
KINDS: Final[Mapping[str, Kind]] = {
    "sandbox": Kind(("DECLINE_HOLDS", "INCREMENTAL"), _sandbox, "in-process sandbox (test cards)"),
    "sandbox-http": Kind(("URL", "INCREMENTAL"), _sandbox_http, "a `tipmeter sandbox-gateway`"),
    "stripe": Kind(("API_KEY", "URL"), _stripe, "Stripe PaymentIntents, manual capture"),
    "segpay": Kind(("URL", "ETICKET_ID"), _segpay, "Segpay Post Pay"),
}
#: The kinds ``TIPMETER_GATEWAY`` (the single-gateway setting) accepts.
LEGACY_KINDS: Final = ("sandbox", "sandbox-http", "stripe")


def kind_fields() -> dict[str, tuple[str, ...]]:
    """Each kind's own fields (for :func:`settlement.processors.settings.parse_processors`)."""
    return {name: kind.fields for name, kind in KINDS.items()}


@dataclass(frozen=True, slots=True)
class Processor:
    """A configured processor and its gateway."""

    spec: ProcessorSpec
    gateway: Gateway


class ProcessorRegistry:
    """The deployment's processors, by name, in the order they were listed."""

    def __init__(
        self, processors: Sequence[Processor], *, cascade_max: int = CASCADE_MAX_DEFAULT
    ) -> None:
        if not processors:
            raise SettlementMisuse("at least one processor is needed")
        if cascade_max < 0:
            raise SettlementMisuse("cascade_max must not be negative")
        self._by_name = {p.spec.name: p for p in processors}
        if len(self._by_name) != len(processors):
            raise SettlementMisuse("processor names must be unique")
        self.default_name = processors[0].spec.name
        self.cascade_max = cascade_max

    @classmethod
    def build(
        cls,
        specs: Sequence[ProcessorSpec],
        *,
        clock: Clock,
        timeout_s: float = TIMEOUT_S_DEFAULT,
        cascade_max: int = CASCADE_MAX_DEFAULT,
        data_dir: Path | None = None,
    ) -> ProcessorRegistry:
        """Build every processor of ``specs`` (SettlementMisuse names a missing setting);
        in-process sandboxes keep their record in ``data_dir`` when one is given."""
        built = []
        for spec in specs:
            kind = KINDS.get(spec.kind)
            if kind is None:
                raise SettlementMisuse(
                    f"{spec.variable('KIND')}={spec.kind!r}: one of {', '.join(KINDS)}"
                )
            timeout = spec.timeout_ms / 1_000 if spec.timeout_ms else timeout_s
            context = BuildContext(clock, timeout, data_dir)
            built.append(Processor(spec, kind.build(spec, context)))
        return cls(built, cascade_max=cascade_max)

    @classmethod
    def single(cls, gateway: Gateway, name: str = DEFAULT_NAME) -> ProcessorRegistry:
        """A registry of one processor: ``gateway`` serves everything."""
        return cls([Processor(ProcessorSpec(name=name, kind="custom"), gateway)])

    def __iter__(self) -> Iterator[Processor]:
        return iter(self._by_name.values())

    @property
    def names(self) -> tuple[str, ...]:
        """The processors' names, in the order listed."""
        return tuple(self._by_name)

    def processor(self, name: str) -> Processor:
        """The processor named ``name`` ("" is the default); UnknownProcessor if none is."""
        found = self._by_name.get(name or self.default_name)
        if found is None:
            raise UnknownProcessor(
                f"no processor {name!r} is configured, but a tab's hold is there: restore its "
                "TIPMETER_PROCESSOR_* settings"
            )
        return found

    def for_processor(self, name: str) -> Gateway:
        """The gateway of the processor that holds a tab (its ``processor`` field)."""
        return self.processor(name).gateway

    def gateways(self) -> dict[str, Gateway]:
        """Every processor's gateway by name (what reconciliation walks)."""
        return {name: p.gateway for name, p in self._by_name.items()}

    @property
    def default(self) -> Gateway:
        """The first processor's gateway."""
        return self.for_processor(self.default_name)

    def close(self) -> None:
        """Release what the processors hold open (the in-process sandboxes' journals)."""
        for processor in self:
            if isinstance(processor.gateway, SandboxGateway):
                processor.gateway.close()

    def route(self, request: RouteRequest) -> tuple[str, ...]:
        """The processors to ask for a new hold, in order (NoProcessor if none may)."""
        return route([p.spec for p in self], request)
