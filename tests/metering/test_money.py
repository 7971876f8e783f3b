"""The money rules: amount validation and the one rounding rule, in Python and in Lua alike."""

from __future__ import annotations

import random

import pytest
import redis

from metering.money import (
    AMOUNT_LIMIT_MINOR,
    BP_ONE,
    CAP_HARD_MAX_MINOR,
    RATE_HARD_MAX_MINOR,
    discounted_minor,
    format_minor,
    is_amount,
    is_positive_amount,
    prorate_minor,
    share_minor,
)
from metering.store import LUA_DIR
from server.embedded_redis import RedisServer


@pytest.mark.parametrize(
    "value",
    [True, False, 1.0, 0.5, float("nan"), float("inf"), "100", b"100", None, -1, 2**53, [1]],
)
def test_is_amount_refuses_everything_but_small_non_negative_ints(value: object) -> None:
    assert not is_amount(value)


@pytest.mark.parametrize("value", [0, 1, 99, 2**53 - 1])
def test_is_amount_accepts_ints_below_2_53(value: int) -> None:
    assert is_amount(value)


def test_positive_amount_excludes_zero() -> None:
    assert not is_positive_amount(0)
    assert is_positive_amount(1)


def test_share_plus_platform_is_the_amount_exactly() -> None:
    rng = random.Random(20261122)
    for _ in range(10_000):
        amount = rng.randrange(0, CAP_HARD_MAX_MINOR + 1)
        bp = rng.randrange(0, 10_001)
        share = share_minor(amount, bp)
        assert 0 <= share <= amount
        assert share == amount * bp // 10_000


def test_prorate_is_exact_on_whole_minutes_and_monotonic() -> None:
    for rate in (1, 7, 59, 60, 61, 499, 1999, RATE_HARD_MAX_MINOR):
        previous = 0
        for seconds in range(0, 600):
            price = prorate_minor(rate, seconds)
            assert price >= previous
            previous = price
            if seconds % 60 == 0:
                assert price == rate * (seconds // 60)


def test_prorate_billed_per_second_sums_to_the_whole() -> None:
    # Billing prorate(n) - prorate(n - 1) each second never drifts from prorate(total).
    rate, total = 1999, 3 * 3600 + 17
    billed = sum(prorate_minor(rate, n) - prorate_minor(rate, n - 1) for n in range(1, total + 1))
    assert billed == prorate_minor(rate, total)


def test_rounding_rules_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="payout_bp"):
        share_minor(100, 10_001)
    with pytest.raises(ValueError, match="seconds"):
        prorate_minor(100, -1)


def test_format_minor_is_for_people() -> None:
    assert format_minor(1234, "USD") == "12.34 USD"
    assert format_minor(5, "EUR") == "0.05 EUR"
    assert format_minor(500, "JPY") == "500 JPY"


def _lua_on_pairs(
    redis_server: RedisServer, function: str, pairs: list[tuple[int, int]]
) -> list[int]:
    """What the prelude's two-argument ``function`` returns on each pair, run in real Redis."""
    script = (LUA_DIR / "_prelude.lua").read_text() + (
        "local out = {}\n"
        "for i = 1, #ARGV, 2 do\n"
        f"  out[#out + 1] = int({function}(tonumber(ARGV[i]), tonumber(ARGV[i + 1])))\n"
        "end\n"
        "return out\n"
    )
    got: list[int] = []
    with redis.Redis(port=redis_server.tcp_port) as client:
        for start in range(0, len(pairs), 500):
            chunk = pairs[start : start + 500]
            got += [
                int(g) for g in client.eval(script, 0, *[str(v) for pair in chunk for v in pair])
            ]
    return got


def test_lua_floor_div_agrees_with_python_up_to_the_hard_bounds(redis_server: RedisServer) -> None:
    """The prelude's floor_div must equal Python's // wherever the products can reach."""
    rng = random.Random(53)
    pairs: list[tuple[int, int]] = []
    for _ in range(2_000):
        bp = rng.randrange(0, 10_001)
        # The worst cases: amounts just under a multiple of 10000 near the top of the range.
        amount = rng.choice(
            [rng.randrange(0, CAP_HARD_MAX_MINOR + 1), CAP_HARD_MAX_MINOR - rng.randrange(0, 3)]
        )
        pairs.append((amount * bp, 10_000))
        rate = rng.randrange(1, RATE_HARD_MAX_MINOR + 1)
        seconds = rng.randrange(0, 10**7)
        pairs.append((rate * seconds, 60))
    pairs += [(AMOUNT_LIMIT_MINOR - 1, 10_000), (10_000 * 900_000_000_000 - 1, 10_000)]
    got = _lua_on_pairs(redis_server, "floor_div", pairs)
    assert got == [a // b for a, b in pairs]


def test_lua_discount_agrees_with_python_up_to_the_hard_bounds(redis_server: RedisServer) -> None:
    """The prelude's discounted() must equal money.discounted_minor on amounts up to the cap
    bound and on rates up to the rate bound, at every discount."""
    rng = random.Random(17)
    pairs = [(CAP_HARD_MAX_MINOR, 9_999), (CAP_HARD_MAX_MINOR, BP_ONE), (1, 1), (0, 5_000)]
    for _ in range(2_000):
        amount = rng.choice(
            [
                rng.randrange(0, CAP_HARD_MAX_MINOR + 1),
                rng.randrange(1, RATE_HARD_MAX_MINOR + 1),
                CAP_HARD_MAX_MINOR - rng.randrange(0, 3),
            ]
        )
        pairs.append((amount, rng.randrange(0, BP_ONE + 1)))
    got = _lua_on_pairs(redis_server, "discounted", pairs)
    assert got == [discounted_minor(a, bp) for a, bp in pairs]
