"""A Hypothesis state machine against a real redis-server, checked against an independent model.

Random interleavings of open, raise, tip (fresh, duplicate, reused id, over cap, bad input) and
freeze. The model below re-implements the rules from the issue and ARCHITECTURE §3 in plain
Python; after every step the invariants are checked on what Redis holds:

1. no overspend: accrued <= cap for every tab;
2. conservation: accrued = Σ lines; shares + platform = amount per line; each room's earnings
   and events match the tips applied to it;
3. idempotency: a tip id is applied at most once; a retry answers with the original result.

On failure Hypothesis prints the steps and the blob that replays them (the seed).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from metering.clock import FakeClock
from metering.lifecycle import TabState
from metering.limits import Limits
from metering.meter import Meter, open_store
from metering.money import share_minor
from metering.outcomes import Code, TabRef
from metering.store import RedisTarget, Store
from metering.tips import TipRequest
from server.embedded_redis import RedisServer

T = TypeVar("T")

LIMITS = Limits(
    tip_min_minor=5, tip_max_minor=5_000, cap_min_minor=100, cap_max_minor=50_000, tab_lines_max=4
)
CUSTOMERS = ("c1", "c2")
CURRENCIES = ("USD", "EUR")
ROOMS = ("r1", "r2")
PAYOUT_BP = {"r1": 6_000, "r2": 7_777}
TIP_IDS = tuple(f"t{n}" for n in range(40))

BAD_AMOUNTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=4),
    st.integers(max_value=0),
    st.integers(min_value=2**53, max_value=2**64),
    st.none(),
)


def _mostly(valid: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """Valid values five times in six, so that most steps reach Redis; malformed ones else."""
    return st.integers(min_value=0, max_value=5).flatmap(lambda n: BAD_AMOUNTS if n == 0 else valid)


AMOUNTS = _mostly(
    st.one_of(st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=6_000))
)
CAPS = _mostly(st.integers(min_value=50, max_value=60_000))


@dataclass
class ModelTab:
    customer: str
    currency: str
    cap: int
    accrued: int = 0
    frozen: bool = False
    lines: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass
class ModelTip:
    tab_id: str
    room: str
    amount: int
    seq: int
    accrued_after: int


def _is_amount(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**53


class MoneyCore(RuleBasedStateMachine):
    """Drives the real money core and an in-memory model side by side."""

    redis_port = 0
    seen: ClassVar[Counter[Code]] = Counter()
    tabs = Bundle("tabs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        with redis.Redis(port=self.redis_port) as client:
            client.flushall()
        self.clock = FakeClock()
        self.store: Store = self.run(
            open_store(RedisTarget(url=f"redis://127.0.0.1:{self.redis_port}/0"))
        )
        self.meter = Meter(self.store, clock=self.clock, limits=LIMITS)
        for room, bp in PAYOUT_BP.items():
            self.run(self.meter.rooms.set_payout_bp(room, bp))
        self.model: dict[str, ModelTab] = {}
        self.open_tabs: dict[tuple[str, str], str] = {}
        self.applied: dict[tuple[str, str], ModelTip] = {}

    def run(self, coro: Any) -> Any:
        self.clock.advance(7)
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.meter.aclose())
        self.run(self.store.close())
        self.loop.close()

    @rule(
        target=tabs,
        customer=st.sampled_from(CUSTOMERS),
        currency=st.sampled_from(CURRENCIES),
        cap=CAPS,
    )
    def open_tab(self, customer: str, currency: str, cap: Any) -> Any:
        result = self.run(
            self.meter.tabs.open(
                customer=customer,
                currency=currency,
                cap_minor=cap,
                auth_ref="auth",
                capture_before_ms=10**13,
            )
        )
        if not _is_amount(cap):
            expected = Code.INVALID_AMOUNT
        elif not (LIMITS.cap_min_minor <= cap <= LIMITS.cap_max_minor):
            expected = Code.CAP_OUT_OF_RANGE
        elif (customer, currency) in self.open_tabs:
            expected = Code.TAB_ALREADY_OPEN
        else:
            expected = Code.APPLIED
        assert result.code is expected, (result, cap)
        if expected is not Code.APPLIED:
            return multiple()
        self.model[result.tab_id] = ModelTab(customer, currency, cap)
        self.open_tabs[(customer, currency)] = result.tab_id
        return result.tab_id

    @rule(tab_id=tabs, new_cap=CAPS)
    def raise_cap(self, tab_id: str, new_cap: Any) -> None:
        tab = self.model[tab_id]
        result = self.run(
            self.meter.tabs.raise_cap(
                TabRef(tab.customer, tab_id),
                cap_minor=new_cap,
                auth_ref="auth2",
                capture_before_ms=10**13,
            )
        )
        if not _is_amount(new_cap):
            expected = Code.INVALID_AMOUNT
        elif not (LIMITS.cap_min_minor <= new_cap <= LIMITS.cap_max_minor):
            expected = Code.CAP_OUT_OF_RANGE
        elif tab.frozen:
            expected = Code.TAB_NOT_OPEN
        elif new_cap == tab.cap:
            expected = Code.DUPLICATE
        elif new_cap < tab.cap:
            expected = Code.CAP_NOT_RAISED
        else:
            expected = Code.APPLIED
            tab.cap = new_cap
        assert result.code is expected, (result, new_cap, tab)

    @rule(
        tab_id=tabs,
        tip_id=st.sampled_from(TIP_IDS),
        room=st.sampled_from(ROOMS),
        amount=AMOUNTS,
        wrong_currency=st.sampled_from([False] * 7 + [True]),
    )
    def tip(self, tab_id: str, tip_id: str, room: str, amount: Any, wrong_currency: bool) -> None:
        self._tip(tab_id, tip_id, room, amount, wrong_currency)

    @rule(data=st.data())
    def retry_an_applied_tip(self, data: st.DataObject) -> None:
        """Send an applied tip again, mostly unchanged (a retry), sometimes altered (reuse)."""
        if not self.applied:
            return
        (_, tip_id), original = data.draw(st.sampled_from(sorted(self.applied.items())))
        altered = data.draw(st.sampled_from([False, False, False, True]))
        amount = original.amount + 1 if altered else original.amount
        self._tip(original.tab_id, tip_id, original.room, amount, wrong_currency=False)

    def _tip(self, tab_id: str, tip_id: str, room: str, amount: Any, wrong_currency: bool) -> None:
        tab = self.model[tab_id]
        currency = (
            tab.currency if not wrong_currency else next(c for c in CURRENCIES if c != tab.currency)
        )
        request = TipRequest(tip_id=tip_id, room=room, amount_minor=amount, currency=currency)
        result = self.run(self.meter.tip(TabRef(tab.customer, tab_id), request))
        previous = self.applied.get((tab.customer, tip_id))
        if not _is_amount(amount) or amount == 0:
            expected = Code.INVALID_AMOUNT
        elif not (LIMITS.tip_min_minor <= amount <= LIMITS.tip_max_minor):
            expected = Code.AMOUNT_OUT_OF_RANGE
        elif previous is not None:
            same = (previous.tab_id, previous.room, previous.amount) == (tab_id, room, amount)
            expected = Code.DUPLICATE if same else Code.ID_REUSED
        elif currency != tab.currency:
            expected = Code.CURRENCY_MISMATCH
        elif tab.frozen:
            expected = Code.TAB_NOT_OPEN
        elif tab.accrued + amount > tab.cap:
            expected = Code.OVER_CAP
        elif len(tab.lines) >= LIMITS.tab_lines_max:
            expected = Code.LINES_FULL
        else:
            expected = Code.APPLIED
        assert result.code is expected, (result, amount, tab)
        MoneyCore.seen[expected] += 1
        if expected is Code.APPLIED:
            tab.accrued += amount
            tab.lines[tip_id] = (room, amount)
            self.applied[(tab.customer, tip_id)] = ModelTip(
                tab_id, room, amount, len(tab.lines), tab.accrued
            )
            assert result.balance.accrued_minor == tab.accrued
            assert result.share_minor == share_minor(amount, PAYOUT_BP[room])
        if expected is Code.DUPLICATE:
            assert previous is not None
            assert (result.seq, result.balance.accrued_minor) == (
                previous.seq,
                previous.accrued_after,
            )

    @rule(
        tab_id=tabs,
        reason=st.sampled_from(["customer_ended", "merchant", "cap_reached"]),
        now=st.sampled_from([False, False, True]),
    )
    def freeze(self, tab_id: str, reason: str, now: bool) -> None:
        if not now:  # freezes are rarer than spending, as in life
            return
        tab = self.model[tab_id]
        result = self.run(self.meter.tabs.freeze(TabRef(tab.customer, tab_id), reason))
        assert result.code is (Code.DUPLICATE if tab.frozen else Code.APPLIED)
        assert result.balance.accrued_minor == tab.accrued
        if not tab.frozen:
            tab.frozen = True
            del self.open_tabs[(tab.customer, tab.currency)]

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        for tab_id, model in self.model.items():
            tab = self.run(self.meter.tabs.read(TabRef(model.customer, tab_id)))
            assert tab is not None
            assert tab.accrued_minor <= tab.cap_minor, "overspend"
            assert tab.accrued_minor == sum(line.amount_minor for line in tab.lines), "conservation"
            assert (tab.accrued_minor, tab.cap_minor) == (model.accrued, model.cap)
            assert tab.state is (TabState.SETTLING if model.frozen else TabState.OPEN)
            assert {line.line_id: (line.room, line.amount_minor) for line in tab.lines} == {
                f"tip:{k}": v for k, v in model.lines.items()
            }
            for line in tab.lines:
                assert line.share_minor == share_minor(line.amount_minor, line.payout_bp)
                assert 0 <= line.amount_minor - line.share_minor <= line.amount_minor
        for room in ROOMS:
            in_room = [m for m in self.applied.values() if m.room == room]
            earned = sum(share_minor(m.amount, PAYOUT_BP[room]) for m in in_room)
            by_currency = Counter[str]()
            for m in in_room:
                by_currency[self.model[m.tab_id].currency] += share_minor(m.amount, PAYOUT_BP[room])
            earnings = self.run(self.meter.rooms.earnings(room))
            assert sum(earnings.values()) == earned
            assert earnings == {f"accrued:{c}": v for c, v in by_currency.items() if v}
            page = self.run(self.meter.rooms.read(room, count=1_000))
            assert len(page.events) == len(in_room)


def test_money_core_state_machine(redis_server: RedisServer) -> None:
    MoneyCore.redis_port = redis_server.port or 0
    machine = MoneyCore.TestCase
    profile = settings()  # the profile loaded in tests/conftest.py
    machine.settings = settings(
        profile, max_examples=max(profile.max_examples, 200), stateful_step_count=60
    )
    machine().runTest()
    # The generator must have reached every outcome of a tip, or the test proves little.
    assert set(MoneyCore.seen) == {
        Code.APPLIED,
        Code.DUPLICATE,
        Code.ID_REUSED,
        Code.INVALID_AMOUNT,
        Code.AMOUNT_OUT_OF_RANGE,
        Code.CURRENCY_MISMATCH,
        Code.TAB_NOT_OPEN,
        Code.OVER_CAP,
        Code.LINES_FULL,
    }, MoneyCore.seen
