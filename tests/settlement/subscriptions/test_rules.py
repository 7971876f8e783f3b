"""Pure rules: the lifecycle table, proration (property tests, seeded), tax, periods, plans."""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.subscriptions import lifecycle
from settlement.subscriptions.errors import PlanInvalid
from settlement.subscriptions.lifecycle import SubEvent, SubState
from settlement.subscriptions.periods import PeriodUnit, period_bounds
from settlement.subscriptions.plans import plan_from_json
from settlement.subscriptions.proration import prorate, time_share
from settlement.subscriptions.tax import tax_line
from tests.settlement.subscriptions.helpers import DAY_MS, START_MS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "subscriptions.md"
prices = st.integers(min_value=0, max_value=10**9)
periods = st.integers(min_value=1, max_value=400 * DAY_MS)


def _half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)).__floor__())


def test_terminal_states_and_the_table() -> None:
    assert {SubState.CANCELLED, SubState.EXPIRED} == lifecycle.TERMINAL
    assert lifecycle.apply(SubState.ACTIVE, SubEvent.DECLINE) is SubState.PAST_DUE
    assert lifecycle.apply(SubState.RESTRICTED, SubEvent.RENEW) is SubState.ACTIVE
    assert lifecycle.apply(SubState.PAST_DUE, SubEvent.CHANGE) is None
    assert lifecycle.apply(SubState.CANCELLED, SubEvent.RENEW) is None
    assert lifecycle.sources(SubEvent.RESTRICT) == {SubState.PAST_DUE}
    # Every live state can be cancelled at once; every state is reachable.
    assert lifecycle.sources(SubEvent.CANCEL) == set(SubState) - lifecycle.TERMINAL
    reached = set(lifecycle.INITIAL) | set(lifecycle.TRANSITIONS.values())
    assert reached == set(SubState)


def test_the_docs_draw_the_table() -> None:
    text = DOCS.read_text()
    diagram = re.search(r"<!-- lifecycle:start -->\n```mermaid\n(.*?)```\n", text, re.S)
    assert diagram is not None
    assert diagram[1] == lifecycle.mermaid()
    table = re.search(
        r"<!-- lifecycle-table:start -->\n(.*?)<!-- lifecycle-table:end -->", text, re.S
    )
    assert table is not None
    assert table[1] == lifecycle.table_markdown()


@given(price=prices, period=periods, data=st.data())
def test_time_share_is_the_exact_fraction_rounded_half_up(
    price: int, period: int, data: st.DataObject
) -> None:
    remaining = data.draw(st.integers(min_value=0, max_value=period))
    assert time_share(price, remaining, period) == _half_up(Fraction(price * remaining, period))
    assert 0 <= time_share(price, remaining, period) <= price
    assert time_share(price, period, period) == price
    assert time_share(price, 0, period) == 0


@given(old=prices, new=prices, period=periods, data=st.data())
def test_a_change_and_back_at_once_nets_zero(
    old: int, new: int, period: int, data: st.DataObject
) -> None:
    remaining = data.draw(st.integers(min_value=0, max_value=period))
    there = prorate(old, new, remaining, period)
    back = prorate(new, old, remaining, period)
    assert there.net_minor + back.net_minor == 0
    assert there.net_minor == there.charge_minor - there.credit_minor
    # Exact: within half a cent of the true prorated difference, on each line.
    exact = Fraction((new - old) * remaining, period)
    assert abs(there.net_minor - exact) <= 1


@given(price=prices, period=periods, data=st.data())
def test_time_share_is_monotonic(price: int, period: int, data: st.DataObject) -> None:
    a = data.draw(st.integers(min_value=0, max_value=period))
    b = data.draw(st.integers(min_value=a, max_value=period))
    assert time_share(price, a, period) <= time_share(price, b, period)


@given(
    amount=st.integers(min_value=-(10**9), max_value=10**9),
    rate=st.integers(min_value=0, max_value=10_000),
    inclusive=st.booleans(),
)
def test_tax_lines_add_up_and_mirror(amount: int, rate: int, inclusive: bool) -> None:
    line = tax_line(amount, rate, inclusive=inclusive)
    assert line.net_minor + line.tax_minor == line.total_minor
    mirrored = tax_line(-amount, rate, inclusive=inclusive)
    assert mirrored.tax_minor == -line.tax_minor
    base = Fraction(amount * rate, 10_000 + rate) if inclusive else Fraction(amount * rate, 10_000)
    assert abs(line.tax_minor - base) <= Fraction(1, 2)


def test_tax_examples() -> None:
    assert tax_line(1000, 1900, inclusive=True).tax_minor == 160  # 159.66 → 160
    assert tax_line(1000, 1900, inclusive=False).total_minor == 1190
    assert tax_line(5, 1000, inclusive=False).tax_minor == 1  # 0.5 → 1 (half away from zero)


def test_months_clamp_to_the_month_end_without_drift() -> None:
    starts = [period_bounds(START_MS, PeriodUnit.MONTH, 1, n)[0] for n in range(1, 5)]
    days = [(b - a) // DAY_MS for a, b in itertools.pairwise(starts)]
    assert days == [28, 31, 30]  # 31 Jan → 28 Feb → 31 Mar → 30 Apr
    a, b = period_bounds(START_MS, PeriodUnit.YEAR, 1, 1)
    assert (b - a) // DAY_MS == 365
    assert period_bounds(START_MS, PeriodUnit.DAY, 10, 2) == (
        START_MS + 10 * DAY_MS,
        START_MS + 20 * DAY_MS,
    )


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"kind": "fan_club"}, "room"),
        ({"room": "r1"}, "site membership"),
        ({"prices": {"USD": {"price_minor": 0}}}, "price_minor > 0"),
        ({"prices": {"USD": {"price_minor": 1.5}}}, "price_minor > 0"),
        ({"period": {"unit": "week"}}, "period.unit"),
        ({"free_every_n": 1}, "free_every_n"),
        ({"dunning": {"restrict_after_days": 20, "cancel_after_days": 10}}, "restrict"),
    ],
)
def test_broken_plans_are_refused_with_what_to_change(
    fields: dict[str, object], words: str
) -> None:
    data: dict[str, object] = {"plan_id": "p", "prices": {"USD": {"price_minor": 100}}}
    data.update(fields)
    with pytest.raises(PlanInvalid, match=words):
        plan_from_json(data)
