"""Plans: what a cam site sells, and the rules that come with it.

A plan has a price per period (month, year or N days) in minor units per currency — a plan sold
in USD and EUR has one price for each — and is either a **site membership** or a **fan club**
of one model's room, whose share of every charge (``model_share_bp`` of the net, after tax) is
recorded on the ledger as the room's payable, like any other line. A plan has a **level** and a
**rank** (bronze 1, silver 2, gold 3): a change to a higher rank is an upgrade. It may have a
**trial** (N days, free or at a trial price, with some features left out), a **fixed term**
(the subscription expires after N periods), a **notice period** for cancellations, a **bonus
rule** (every Nth period free), a **dunning plan** (what happens after a declined renewal) and
**allowances** that reach the meter: free seconds of a show kind per period, or a discount in
basis points on a show kind's per-minute rate or on tips (:class:`PlanAllowance`;
:mod:`settlement.subscriptions.allowances` reserves them into a member's tabs).

A plan that counts something (seats, fan-club members: the subscription's ``quantity``) prices
it by **tiers** per currency, on top of the flat ``price_minor`` (which may then be 0):
``graduated`` — each tier prices the units that fall in it — or ``volume`` — the tier the whole
quantity falls in prices every unit; a tier may add a flat amount. **Add-ons** are further
priced items a member adds to the subscription (``quantity_max`` of each), per currency like the
plan's price. :mod:`settlement.subscriptions.pricing` computes what a period costs from them.

:func:`plan_from_json` checks a plan from the API; a broken one raises :class:`PlanInvalid`
saying what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from metering.allowances import SECONDS_KINDS, AllowanceKind
from metering.keys import is_id
from metering.money import BP_ONE, is_amount, is_currency, is_positive_amount
from settlement.subscriptions.errors import PlanInvalid
from settlement.subscriptions.periods import DAY_MS, PeriodUnit

#: Bounds of a plan's numbers as they are accepted.
PERIOD_LENGTH_MAX: Final = 366
TRIAL_DAYS_MAX: Final = 365
TERM_PERIODS_MAX: Final = 1_000
NOTICE_DAYS_MAX: Final = 365
FEATURES_MAX: Final = 32
#: Most tiers a price has, add-ons a plan offers, and the largest quantity counted (the
#: ledger's ``subscriptions.quantity`` CHECK holds the same bound).
TIERS_MAX: Final = 10
ADDONS_MAX: Final = 16
QUANTITY_MAX: Final = 1_000_000
#: The default dunning plan: retries 1, 3, 5 and 7 days after the declined renewal (each also
#: held to the card-network table), features restricted after 7 days, cancelled after 14.
DUNNING_RETRY_DAYS_DEFAULT: Final = (1, 3, 5, 7)
DUNNING_RESTRICT_DAYS_DEFAULT: Final = 7
DUNNING_CANCEL_DAYS_DEFAULT: Final = 14
#: How long before a renewal a member whose card expires first is told to update it.
CARD_EXPIRY_NOTICE_DAYS_DEFAULT: Final = 7
#: Most free seconds of one show kind a plan may give per period (a year of them).
ALLOWANCE_SECONDS_MAX: Final = 366 * 86_400


class AllowanceUnit(StrEnum):
    """How an allowance is counted: free seconds (consumed) or a discount in basis points."""

    SECONDS = "seconds"
    BP = "bp"


@dataclass(frozen=True, slots=True)
class PlanAllowance:
    """What a plan gives its members each period for one kind: ``granted`` free seconds of a
    show kind, or a discount of ``granted`` basis points on the kind's rate (or on tips)."""

    kind: AllowanceKind
    unit: AllowanceUnit
    granted: int

    def to_json(self) -> dict[str, Any]:
        """The allowance as the API shows it."""
        return {"kind": str(self.kind), "unit": str(self.unit), "granted": self.granted}


class PlanKind(StrEnum):
    """What a plan gives access to."""

    SITE = "site"  # a site-wide membership: all of it is the platform's
    FAN_CLUB = "fan_club"  # one model's fan club: her share goes to her room


class TierMode(StrEnum):
    """How a plan's tiers price a quantity."""

    GRADUATED = "graduated"  # each tier prices the units that fall in it
    VOLUME = "volume"  # the tier the whole quantity falls in prices every unit


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier: units up to ``up_to`` (0: no bound, the last tier) at ``unit_minor`` each, and
    ``flat_minor`` once when the tier applies."""

    up_to: int
    unit_minor: int
    flat_minor: int = 0


@dataclass(frozen=True, slots=True)
class Price:
    """A plan's price in one currency: per period, and during the trial (0: free); with tiers,
    what the subscription's quantity adds per period."""

    price_minor: int
    trial_price_minor: int = 0
    tiers: tuple[Tier, ...] = ()


@dataclass(frozen=True, slots=True)
class Addon:
    """An extra priced item of a plan: a price per period in each currency of the plan, and
    how many of it one subscription may have."""

    addon_id: str
    prices: Mapping[str, int]
    quantity_max: int = 1
    name: str = ""


@dataclass(frozen=True, slots=True)
class DunningPlan:
    """What follows a declined renewal (days counted from the first decline of the period)."""

    retry_days: tuple[int, ...] = DUNNING_RETRY_DAYS_DEFAULT
    restrict_after_days: int = DUNNING_RESTRICT_DAYS_DEFAULT
    cancel_after_days: int = DUNNING_CANCEL_DAYS_DEFAULT

    @property
    def restrict_after_ms(self) -> int:
        """Days past due before the features are withheld, in ms."""
        return self.restrict_after_days * DAY_MS

    @property
    def cancel_after_ms(self) -> int:
        """Days past due before the subscription is cancelled, in ms."""
        return self.cancel_after_days * DAY_MS


@dataclass(frozen=True, slots=True)
class Plan:
    """One plan (see the module docstring)."""

    plan_id: str
    kind: PlanKind
    prices: Mapping[str, Price]
    period_unit: PeriodUnit = PeriodUnit.MONTH
    period_length: int = 1
    room: str = ""
    model_share_bp: int = 0
    level: str = ""
    rank: int = 0
    trial_days: int = 0
    term_periods: int = 0  # 0: until cancelled
    notice_days: int = 0
    tax_inclusive: bool = True
    free_every_n: int = 0  # 0: no bonus; N: every Nth paid-for period is free
    features: tuple[str, ...] = ()
    trial_excludes: tuple[str, ...] = ()
    dunning: DunningPlan = field(default_factory=DunningPlan)
    allowances: tuple[PlanAllowance, ...] = ()
    #: Tiers (set with their mode and what they count, e.g. "seat"): every price has tiers.
    tier_mode: TierMode | None = None
    tier_unit: str = ""
    addons: Mapping[str, Addon] = field(default_factory=dict)

    def price(self, currency: str) -> Price | None:
        """The price in ``currency`` (None: not sold in it)."""
        return self.prices.get(currency)

    def features_in(self, trialing: bool) -> tuple[str, ...]:
        """The features a member has (in a trial, less the excluded ones)."""
        if not trialing:
            return self.features
        return tuple(f for f in self.features if f not in self.trial_excludes)

    def is_free_period(self, period_no: int) -> bool:
        """Whether the bonus rule makes period ``period_no`` (≥ 1) free."""
        return self.free_every_n > 0 and period_no % self.free_every_n == 0

    def to_json(self) -> dict[str, Any]:
        """The plan as the API and the database show it."""
        return {
            "plan_id": self.plan_id,
            "kind": str(self.kind),
            "room": self.room,
            "model_share_bp": self.model_share_bp,
            "level": self.level,
            "rank": self.rank,
            "period": {"unit": str(self.period_unit), "length": self.period_length},
            "prices": {cur: _price_json(p) for cur, p in sorted(self.prices.items())},
            "trial_days": self.trial_days,
            "term_periods": self.term_periods,
            "notice_days": self.notice_days,
            "tax_inclusive": self.tax_inclusive,
            "free_every_n": self.free_every_n,
            "features": list(self.features),
            "trial_excludes": list(self.trial_excludes),
            "dunning": {
                "retry_days": list(self.dunning.retry_days),
                "restrict_after_days": self.dunning.restrict_after_days,
                "cancel_after_days": self.dunning.cancel_after_days,
            },
            "allowances": [a.to_json() for a in self.allowances],
            **self._items_json(),
        }

    def _items_json(self) -> dict[str, Any]:
        # Left out when unused, so the plans created before tiers read the same.
        out: dict[str, Any] = {}
        if self.tier_mode is not None:
            out["tiers"] = {"mode": str(self.tier_mode), "unit": self.tier_unit}
        if self.addons:
            out["addons"] = [
                {
                    "addon_id": a.addon_id,
                    "name": a.name,
                    "prices": dict(sorted(a.prices.items())),
                    "quantity_max": a.quantity_max,
                }
                for a in sorted(self.addons.values(), key=lambda a: a.addon_id)
            ]
        return out


def _price_json(price: Price) -> dict[str, Any]:
    out: dict[str, Any] = {
        "price_minor": price.price_minor,
        "trial_price_minor": price.trial_price_minor,
    }
    if price.tiers:
        out["tiers"] = [
            {"up_to": t.up_to or None, "unit_minor": t.unit_minor, "flat_minor": t.flat_minor}
            for t in price.tiers
        ]
    return out


def _int(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PlanInvalid(f"{name} must be an integer in [{low}, {high}]")
    return value


def _names(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, [])
    if (
        not isinstance(value, list)
        or len(value) > FEATURES_MAX
        or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
    ):
        raise PlanInvalid(f"{name} must be a list of at most {FEATURES_MAX} names")
    return tuple(value)


def _tiers(value: object, where: str) -> tuple[Tier, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= TIERS_MAX:
        raise PlanInvalid(f"{where}.tiers: a list of 1 to {TIERS_MAX} tiers")
    tiers = []
    below = 0
    for number, entry in enumerate(value, start=1):
        last = number == len(value)
        if not isinstance(entry, dict):
            raise PlanInvalid(f"{where}.tiers[{number}] must be an object")
        up_to = entry.get("up_to")
        unit, flat = entry.get("unit_minor", 0), entry.get("flat_minor", 0)
        if last and up_to is not None:
            raise PlanInvalid(f"{where}.tiers: the last tier has no bound (up_to: null)")
        if not last and (
            not isinstance(up_to, int) or isinstance(up_to, bool) or not below < up_to
        ):
            raise PlanInvalid(f"{where}.tiers[{number}].up_to: an integer above {below}")
        if not is_amount(unit) or unit < 0 or not is_amount(flat) or flat < 0:
            raise PlanInvalid(f"{where}.tiers[{number}]: unit_minor and flat_minor >= 0")
        bound = up_to if isinstance(up_to, int) and not last else 0
        tiers.append(Tier(bound, unit, flat))
        below = bound
    return tuple(tiers)


def _prices(value: object, tiered: bool) -> dict[str, Price]:
    if not isinstance(value, dict) or not value:
        raise PlanInvalid('prices must map currencies to {"price_minor": …}, at least one')
    prices = {}
    for currency, entry in value.items():
        if not is_currency(currency) or not isinstance(entry, dict):
            raise PlanInvalid(f"prices: {currency!r} is not a currency with a price")
        price, trial = entry.get("price_minor"), entry.get("trial_price_minor", 0)
        # A tiered plan may charge for the quantity alone: its flat price may be 0.
        if tiered and is_amount(price) and price == 0:
            pass
        elif not is_positive_amount(price) or not is_amount(trial) or trial < 0:
            raise PlanInvalid(f"prices.{currency}: price_minor > 0 and trial_price_minor >= 0")
        if not is_amount(trial) or trial < 0:
            raise PlanInvalid(f"prices.{currency}: trial_price_minor >= 0")
        if tiered != ("tiers" in entry):
            raise PlanInvalid(
                f"prices.{currency}.tiers: every price of a tiered plan has tiers, and only "
                "a tiered plan's"
            )
        tiers = _tiers(entry["tiers"], f"prices.{currency}") if tiered else ()
        prices[currency] = Price(price, trial, tiers)
    return prices


def _tier_mode(value: object) -> tuple[TierMode | None, str]:
    if value is None:
        return None, ""
    if not isinstance(value, dict):
        raise PlanInvalid('tiers must be {"mode": "graduated"|"volume", "unit": "seat"}')
    try:
        mode = TierMode(str(value.get("mode")))
    except ValueError:
        raise PlanInvalid("tiers.mode must be 'graduated' or 'volume'") from None
    unit = value.get("unit", "unit")
    if not isinstance(unit, str) or not 0 < len(unit) <= 40:
        raise PlanInvalid("tiers.unit names what is counted (seat, member …), 1-40 characters")
    return mode, unit


def _addons(value: object, currencies: set[str]) -> dict[str, Addon]:
    if value is None:
        return {}
    if not isinstance(value, list) or len(value) > ADDONS_MAX:
        raise PlanInvalid(f"addons: a list of at most {ADDONS_MAX}")
    addons: dict[str, Addon] = {}
    for entry in value:
        if not isinstance(entry, dict):
            raise PlanInvalid("addons: each add-on is an object")
        addon_id = entry.get("addon_id")
        if not isinstance(addon_id, str) or not is_id(addon_id) or addon_id in addons:
            raise PlanInvalid("addons: each addon_id is a distinct id ([A-Za-z0-9_.-]{1,64})")
        name = entry.get("name", "")
        if not isinstance(name, str) or len(name) > 60:
            raise PlanInvalid(f"addons.{addon_id}.name: at most 60 characters")
        prices = entry.get("prices")
        if (
            not isinstance(prices, dict)
            or set(prices) != currencies
            or not all(is_positive_amount(v) for v in prices.values())
        ):
            raise PlanInvalid(
                f"addons.{addon_id}.prices: a price > 0 in each of the plan's currencies "
                f"({', '.join(sorted(currencies))})"
            )
        quantity_max = _int(entry, "quantity_max", 1, 1, QUANTITY_MAX)
        addons[addon_id] = Addon(addon_id, dict(prices), quantity_max, name)
    return addons


def _dunning(value: object) -> DunningPlan:
    if value is None:
        return DunningPlan()
    if not isinstance(value, dict):
        raise PlanInvalid("dunning must be an object")
    retry = value.get("retry_days", list(DUNNING_RETRY_DAYS_DEFAULT))
    if (
        not isinstance(retry, list)
        or len(retry) > 15
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 60 for d in retry)
        or retry != sorted(set(retry))
    ):
        raise PlanInvalid("dunning.retry_days: at most 15 increasing days in [1, 60]")
    restrict = _int(value, "restrict_after_days", DUNNING_RESTRICT_DAYS_DEFAULT, 0, 60)
    cancel = _int(value, "cancel_after_days", DUNNING_CANCEL_DAYS_DEFAULT, 1, 90)
    if restrict > cancel:
        raise PlanInvalid("dunning: restrict_after_days must not exceed cancel_after_days")
    return DunningPlan(tuple(retry), restrict, cancel)


def _allowances(value: object) -> tuple[PlanAllowance, ...]:
    shape = 'allowances: a list of {"kind": "private"|"spy"|"cam2cam"|"tip", "unit": ' + (
        '"seconds"|"bp", "granted": N}, one per kind and unit'
    )
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 2 * len(AllowanceKind):
        raise PlanInvalid(shape)
    out: list[PlanAllowance] = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"kind", "unit", "granted"}:
            raise PlanInvalid(shape)
        try:
            kind, unit = AllowanceKind(entry["kind"]), AllowanceUnit(entry["unit"])
        except ValueError:
            raise PlanInvalid(shape) from None
        if unit is AllowanceUnit.SECONDS and kind not in SECONDS_KINDS:
            raise PlanInvalid("allowances: free seconds are for a show kind, not for tips")
        high = ALLOWANCE_SECONDS_MAX if unit is AllowanceUnit.SECONDS else BP_ONE
        granted = _int(entry, "granted", 0, 1, high)
        if any(a.kind is kind and a.unit is unit for a in out):
            raise PlanInvalid(shape)
        out.append(PlanAllowance(kind, unit, granted))
    return tuple(out)


def plan_from_json(data: Mapping[str, Any]) -> Plan:
    """A plan from its JSON form (:meth:`Plan.to_json`'s shape); PlanInvalid if it is broken."""
    plan_id = data.get("plan_id")
    if not isinstance(plan_id, str) or not 0 < len(plan_id) <= 100 or ":" in plan_id:
        raise PlanInvalid("plan_id must be 1-100 characters without ':'")
    try:
        kind = PlanKind(data.get("kind", "site"))
    except ValueError:
        raise PlanInvalid("kind must be 'site' or 'fan_club'") from None
    period = data.get("period", {"unit": "month", "length": 1})
    if not isinstance(period, dict):
        raise PlanInvalid('period must be {"unit": "month"|"year"|"day", "length": N}')
    try:
        unit = PeriodUnit(period.get("unit", "month"))
    except ValueError:
        raise PlanInvalid("period.unit must be 'day', 'month' or 'year'") from None
    length = _int(period, "length", 1, 1, PERIOD_LENGTH_MAX)
    room = data.get("room", "")
    if not isinstance(room, str) or len(room) > 100:
        raise PlanInvalid("room must be a room id")
    share = _int(data, "model_share_bp", 0, 0, BP_ONE)
    if kind is PlanKind.FAN_CLUB and not room:
        raise PlanInvalid("a fan club names its model's room")
    if kind is PlanKind.SITE and (room or share):
        raise PlanInvalid("a site membership has no room and no model share")
    level = data.get("level", "")
    if not isinstance(level, str) or len(level) > 40:
        raise PlanInvalid("level must be a short name (bronze, silver, gold …)")
    inclusive = data.get("tax_inclusive", True)
    if not isinstance(inclusive, bool):
        raise PlanInvalid("tax_inclusive must be true or false")
    free_every_n = _int(data, "free_every_n", 0, 0, 1_000)
    if free_every_n == 1:
        raise PlanInvalid("free_every_n: 0 (no bonus) or N >= 2 (every Nth period free)")
    tier_mode, tier_unit = _tier_mode(data.get("tiers"))
    prices = _prices(data.get("prices"), tier_mode is not None)
    return Plan(
        plan_id=plan_id,
        kind=kind,
        prices=prices,
        period_unit=unit,
        period_length=length,
        room=room,
        model_share_bp=share,
        level=level,
        rank=_int(data, "rank", 0, 0, 1_000),
        trial_days=_int(data, "trial_days", 0, 0, TRIAL_DAYS_MAX),
        term_periods=_int(data, "term_periods", 0, 0, TERM_PERIODS_MAX),
        notice_days=_int(data, "notice_days", 0, 0, NOTICE_DAYS_MAX),
        tax_inclusive=inclusive,
        free_every_n=free_every_n,
        features=_names(data, "features"),
        trial_excludes=_names(data, "trial_excludes"),
        dunning=_dunning(data.get("dunning")),
        allowances=_allowances(data.get("allowances")),
        tier_mode=tier_mode,
        tier_unit=tier_unit,
        addons=_addons(data.get("addons"), set(prices)),
    )
