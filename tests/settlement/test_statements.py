"""Statements: itemized per model and rate; lines, shares and platform add up exactly."""

from __future__ import annotations

import pytest

from metering.lifecycle import TabState
from metering.money import prorate_minor, share_minor
from metering.outcomes import Line, Tab, TabRef
from settlement.errors import StatementMismatch
from settlement.scripts import SettlementRecord
from settlement.statements import build_statement, itemize, statement_data


def _tip(seq: int, room: str, amount: int, bp: int = 6_000) -> Line:
    return Line("tip", f"tip:{seq}", seq, seq, room, amount, bp, share_minor(amount, bp))


def _session(seq: int, room: str, seconds: int, rate: int, bp: int = 6_000) -> Line:
    amount = prorate_minor(rate, seconds)
    return Line(
        "session", f"s:{seq}", seq, seq, room, amount, bp, share_minor(amount, bp), seconds, rate
    )


LINES = (
    _tip(1, "roomB", 500),
    _session(2, "roomA", 95, 199),
    _tip(3, "roomA", 333, 7_777),
    _session(4, "roomA", 61, 199),
    _session(5, "roomA", 30, 400),
    _tip(6, "roomB", 1),
)


def _tab(lines: tuple[Line, ...], accrued: int) -> Tab:
    return Tab(
        TabRef("c1", "tab_1"),
        "USD",
        TabState.SETTLING,
        10_000,
        accrued,
        3,
        "a",
        0,
        0,
        0,
        lines=lines,
    )


def test_lines_group_per_model_and_rate() -> None:
    items, shares = itemize(LINES)
    assert [(i.room, i.kind, i.count, i.seconds, i.rate_per_minute_minor) for i in items] == [
        ("roomA", "tip", 1, 0, 0),
        ("roomA", "session", 2, 156, 199),
        ("roomA", "session", 1, 30, 400),
        ("roomB", "tip", 2, 0, 0),
    ]
    # Session amounts are the sums of the lines as billed (each prorated once, floored).
    assert items[1].amount_minor == prorate_minor(199, 95) + prorate_minor(199, 61)
    assert dict(shares) == {
        "roomA": sum(line.share_minor for line in LINES if line.room == "roomA"),
        "roomB": 300 + 0,
    }


def test_the_statement_adds_up_exactly() -> None:
    accrued = sum(line.amount_minor for line in LINES)
    statement = build_statement(_tab(LINES, accrued), SettlementRecord())
    assert statement.total_minor == accrued
    assert sum(i.amount_minor for i in statement.lines) == accrued
    assert sum(s for _, s in statement.model_shares) + statement.platform_minor == accrued
    data = statement_data(statement)
    assert data["lines"][1] == {
        "kind": "session",
        "room": "roomA",
        "count": 2,
        "amount_minor": statement.lines[1].amount_minor,
        "share_minor": statement.lines[1].share_minor,
        "seconds": 156,
        "rate_per_minute_minor": 199,
    }
    assert all(
        type(v) is int
        for line in data["lines"]
        for v in line.values()
        if v not in (line["kind"], line["room"])
    )


def test_a_tab_its_lines_do_not_explain_is_refused() -> None:
    accrued = sum(line.amount_minor for line in LINES)
    with pytest.raises(StatementMismatch, match="lines sum"):
        build_statement(_tab(LINES, accrued + 1), SettlementRecord())
    with pytest.raises(StatementMismatch, match="settling"):
        build_statement(_tab(LINES, accrued), SettlementRecord(amount_minor=accrued - 1))
