"""The named list of processors, from ``TIPMETER_*`` variables, validated at start.

One setting per variable, like every other setting: ``TIPMETER_PROCESSORS`` names the
processors (``eu,us,segpay``) and each one's fields are ``TIPMETER_PROCESSOR_<NAME>_<FIELD>``
(``TIPMETER_PROCESSOR_EU_KIND=stripe``). Fields every processor has:

==================  ==============================================================================
field               meaning
==================  ==============================================================================
``KIND``            the adapter (required): one of :data:`settlement.processors.registry.KINDS`
``CURRENCIES``      ISO-4217 codes it serves, comma-separated (unset: every currency)
``COUNTRIES``       customer countries (ISO 3166 alpha-2) it serves (unset: every country)
``PRODUCTS``        what it sells: ``tab`` (Post Pay), ``membership`` (unset: both)
``WEIGHT``          share of the routed traffic among eligible processors (default 1; 0: only
                    when the cam site names it)
``TIMEOUT_MS``      bound on one call (default: ``TIPMETER_GATEWAY_TIMEOUT_MS``)
==================  ==============================================================================

and the kind's own fields (``URL``, ``API_KEY``, ``ETICKET_ID`` …), listed with the kind in
the registry. Without ``TIPMETER_PROCESSORS``, the single-gateway settings
(``TIPMETER_GATEWAY``, ``TIPMETER_GATEWAY_URL``, ``TIPMETER_STRIPE_API_KEY``) describe one
processor named after its kind (``sandbox``, ``sandbox-http``, ``stripe``: the name the ledger
records for it), so older deployments run unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from metering.money import is_currency
from settlement.errors import SettlementMisuse

PREFIX: Final = "TIPMETER_PROCESSOR_"
LIST_VARIABLE: Final = "TIPMETER_PROCESSORS"
#: The name of a gateway given alone (a worker built with one gateway, as in tests).
DEFAULT_NAME: Final = "sandbox"
#: What a processor may sell.
PRODUCTS: Final = frozenset({"tab", "membership"})
#: Processors one deployment may name.
PROCESSORS_MAX: Final = 32
WEIGHT_MAX: Final = 1_000
COMMON_FIELDS: Final = ("KIND", "CURRENCIES", "COUNTRIES", "PRODUCTS", "WEIGHT", "TIMEOUT_MS")
_NAME: Final = re.compile(r"[a-z][a-z0-9]{0,31}")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")
#: Where each field of the default processor comes from.
LEGACY_VARIABLES: Final[Mapping[str, str]] = {
    "KIND": "TIPMETER_GATEWAY",
    "URL": "TIPMETER_GATEWAY_URL",
    "API_KEY": "TIPMETER_STRIPE_API_KEY",
    "TIMEOUT_MS": "TIPMETER_GATEWAY_TIMEOUT_MS",
}


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """One configured processor: its name, kind, routing facts and its own settings."""

    name: str
    kind: str
    #: The kind's own fields (``URL``, ``API_KEY`` …), as written (out of the repr, which
    #: ``tipmeter config`` prints: they hold secrets).
    options: Mapping[str, str] = field(default_factory=dict, repr=False)
    currencies: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    products: frozenset[str] = frozenset()
    weight: int = 1
    timeout_ms: int | None = None
    #: True for the processor read from the single-gateway settings.
    legacy: bool = False

    def variable(self, field_name: str) -> str:
        """The environment variable that sets ``field_name`` of this processor."""
        if self.legacy and field_name in LEGACY_VARIABLES:
            return LEGACY_VARIABLES[field_name]
        return f"{PREFIX}{self.name.upper()}_{field_name}"

    def option(self, field_name: str) -> str | None:
        """A kind's field, or None when unset."""
        return self.options.get(field_name) or None

    def require(self, field_name: str) -> str:
        """A kind's field that must be set; the error names the variable."""
        value = self.option(field_name)
        if value is None:
            raise SettlementMisuse(
                f"processor {self.name!r} ({self.kind}) needs {self.variable(field_name)}"
            )
        return value


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def parse_processors(
    env: Mapping[str, str], kind_fields: Mapping[str, tuple[str, ...]]
) -> tuple[ProcessorSpec, ...]:
    """The processors ``env`` names (empty if ``TIPMETER_PROCESSORS`` is unset).

    ``kind_fields`` maps each known kind to the fields of its own. Raises SettlementMisuse,
    naming the variable, for a malformed list, a missing or unknown kind, a malformed field, or
    a ``TIPMETER_PROCESSOR_…`` variable that belongs to no named processor.
    """
    raw_list = env.get(LIST_VARIABLE, "")
    names = _csv(raw_list)
    stray = sorted(k for k in env if k.startswith(PREFIX))
    if not names:
        if stray:
            raise SettlementMisuse(
                f"{', '.join(stray)} set, but {LIST_VARIABLE} names no processor"
            )
        return ()
    if len(names) > PROCESSORS_MAX:
        raise SettlementMisuse(f"{LIST_VARIABLE}: at most {PROCESSORS_MAX} processors")
    if len(set(names)) != len(names):
        raise SettlementMisuse(f"{LIST_VARIABLE}={raw_list!r}: a processor is named twice")
    specs: list[ProcessorSpec] = []
    used: set[str] = set()
    for name in names:
        if not _NAME.fullmatch(name):
            raise SettlementMisuse(
                f"{LIST_VARIABLE}: processor names are lower-case letters and digits, "
                f"starting with a letter (got {name!r})"
            )
        var = f"{PREFIX}{name.upper()}_"
        kind = env.get(var + "KIND", "")
        if kind not in kind_fields:
            raise SettlementMisuse(
                f"{var}KIND={kind!r}: one of {', '.join(sorted(kind_fields))} is needed"
            )
        allowed = (*COMMON_FIELDS, *kind_fields[kind])
        for key in stray:
            if key.startswith(var) and key.removeprefix(var) in allowed:
                used.add(key)
        specs.append(_spec(name, kind, env, var, kind_fields[kind]))
    unknown = [k for k in stray if k not in used]
    if unknown:
        raise SettlementMisuse(
            f"unknown processor setting(s) {', '.join(unknown)}; a processor's fields are "
            "listed in docs/processors.md"
        )
    return tuple(specs)


def _spec(
    name: str, kind: str, env: Mapping[str, str], var: str, own_fields: tuple[str, ...]
) -> ProcessorSpec:
    currencies = frozenset(_csv(env.get(var + "CURRENCIES", "")))
    for currency in currencies:
        if not is_currency(currency):
            raise SettlementMisuse(f"{var}CURRENCIES: {currency!r} is not an accepted currency")
    countries = frozenset(_csv(env.get(var + "COUNTRIES", "")))
    for country in countries:
        if not _COUNTRY.fullmatch(country):
            raise SettlementMisuse(f"{var}COUNTRIES: {country!r} is not an ISO 3166 alpha-2 code")
    products = frozenset(_csv(env.get(var + "PRODUCTS", "")))
    if not products <= PRODUCTS:
        raise SettlementMisuse(f"{var}PRODUCTS: each one of {', '.join(sorted(PRODUCTS))}")
    weight = _integer(env, var + "WEIGHT", 1, 0, WEIGHT_MAX)
    timeout = env.get(var + "TIMEOUT_MS")
    options = {f: env[var + f] for f in own_fields if env.get(var + f)}
    return ProcessorSpec(
        name=name,
        kind=kind,
        options=options,
        currencies=currencies,
        countries=countries,
        products=products,
        weight=weight,
        timeout_ms=_integer(env, var + "TIMEOUT_MS", 0, 100, 600_000) if timeout else None,
    )


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SettlementMisuse(f"{name}={raw!r}: an integer in {low}..{high} is needed")
    return int(raw)


def legacy_processor(kind: str, *, url: str | None, stripe_api_key: str | None) -> ProcessorSpec:
    """The one processor the single-gateway settings describe (``TIPMETER_GATEWAY`` …)."""
    options = {k: v for k, v in (("URL", url), ("API_KEY", stripe_api_key)) if v}
    return ProcessorSpec(name=kind, kind=kind, options=options, legacy=True)
