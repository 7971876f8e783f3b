"""The refund policy and the rounding rule, as pure functions (no I/O)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from settlement.refunds.policy import (
    LineFacts,
    RefundAsk,
    RefundPolicy,
    Verdict,
    decide,
    policy_max,
)
from settlement.refunds.split import model_part, step_part

POLICY = RefundPolicy()
HOUR_MS = 3_600_000


def _show(
    seconds: int, amount: int, kind: str = "private", remaining: int | None = None
) -> LineFacts:
    return LineFacts(
        "sess:s1",
        2,
        "session",
        "r",
        amount,
        amount if remaining is None else remaining,
        show_kind=kind,
        seconds=seconds,
    )


TIP = LineFacts("tip:t1", 1, "tip", "r", 500, 500)


def _ask(**kw: object) -> RefundAsk:
    return RefundAsk(captured_at_ms=0, now_ms=HOUR_MS, **kw)  # type: ignore[arg-type]


def test_the_decision_table() -> None:
    short, long_ = _show(240, 480), _show(600, 1_200)
    cases = [
        (_ask(lines={"sess:s1": None}), [short], Verdict.ALLOWED, "within_policy"),
        (_ask(lines={"sess:s1": None}), [long_], Verdict.NEEDS_CONSENT, "beyond_show_policy"),
        (_ask(lines={"sess:s1": 600}), [long_], Verdict.ALLOWED, "within_policy"),
        (_ask(lines={"tip:t1": None}), [TIP], Verdict.NEEDS_CONSENT, "tip_needs_consent"),
        (_ask(lines={"sess:s1": None}), [_show(10, 20, "spy")], Verdict.REFUSED, "not_refundable"),
        (_ask(lines={"tip:t1": 501}), [TIP], Verdict.REFUSED, "exceeds_refundable"),
        (_ask(amount_minor=2_000), [TIP, long_], Verdict.REFUSED, "exceeds_refundable"),
        (_ask(lines={"tip:x": None}), [TIP], Verdict.REFUSED, "line_not_found"),
        (_ask(override=True), [TIP, long_], Verdict.ALLOWED, "support_override"),
        (
            RefundAsk(captured_at_ms=0, now_ms=48 * HOUR_MS + 1, amount_minor=1),
            [short],
            Verdict.REFUSED,
            "refund_window_closed",
        ),
    ]
    for ask, lines, verdict, reason in cases:
        decision = decide(POLICY, ask, lines)
        assert (decision.verdict, decision.reason) == (verdict, reason), (ask, decision)


def test_an_amount_is_spread_within_the_policy_first() -> None:
    long_ = _show(600, 1_200)
    decision = decide(POLICY, _ask(amount_minor=700), [TIP, long_])
    # 600 of the show is within the policy; the other 100 needs consent, taken from the show
    # (latest line first) before the tip.
    assert decision.verdict is Verdict.NEEDS_CONSENT
    assert decision.lines == (("sess:s1", 700),)
    assert decision.policy_max_minor == 600
    assert decide(POLICY, _ask(amount_minor=600), [TIP, long_]).verdict is Verdict.ALLOWED


def test_a_show_already_partly_refunded_keeps_its_policy_bound() -> None:
    assert policy_max(POLICY, _show(600, 1_200, remaining=1_000)) == 400
    assert policy_max(POLICY, _show(600, 1_200, remaining=500)) == 0
    assert policy_max(RefundPolicy(spy_refundable=True), _show(30, 60, "spy")) == 60


@given(
    captured=st.integers(1, 10**7),
    share_bp=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10**7), max_size=8),
)
def test_steps_take_back_exactly_the_share_once_a_line_is_whole(
    captured: int, share_bp: int, cuts: list[int]
) -> None:
    share = captured * share_bp // 10_000
    points = sorted({min(c, captured) for c in cuts} | {0, captured})
    taken_model = 0
    for before, after in itertools.pairwise(points):
        part = step_part(
            after - before,
            taken_before_minor=before,
            model_taken_before_minor=taken_model,
            captured_minor=captured,
            share_minor=share,
        )
        assert 0 <= part <= after - before
        taken_model += part
        assert taken_model == model_part(after, captured, share)
    assert taken_model == share
