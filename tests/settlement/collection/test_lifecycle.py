"""The collection case lifecycle table, driven directly; the docs draw the same table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metering.lifecycle import TabEvent, TabState, next_state
from settlement.collection.lifecycle import (
    CHARGEABLE,
    TAB_EVENT,
    TERMINAL,
    TRANSITIONS,
    CaseEvent,
    CaseState,
    apply,
    mermaid,
)
from settlement.collection.policy import retry_table_markdown
from tests.support.tables import reachable

DOC = Path(__file__).parents[3] / "docs" / "collection.md"


def test_paid_and_written_off_are_the_only_terminal_states() -> None:
    assert frozenset({CaseState.PAID, CaseState.WRITTEN_OFF}) == TERMINAL
    assert set(TAB_EVENT) == set(TERMINAL)


def test_every_state_is_reachable_from_open_and_can_reach_a_terminal_state() -> None:
    assert reachable(TRANSITIONS, CaseState.OPEN) == set(CaseState)
    for state in CaseState:
        if state not in TERMINAL:
            assert apply(state, CaseEvent.WRITE_OFF) is CaseState.WRITTEN_OFF


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_nothing_leaves_a_terminal_state(state: CaseState) -> None:
    assert all(apply(state, event) is None for event in CaseEvent)


def test_only_chargeable_states_may_be_paid() -> None:
    assert {s for s in CaseState if apply(s, CaseEvent.PAY) is not None} == set(CHARGEABLE)


@pytest.mark.parametrize("tab_state", [TabState.FAILED, TabState.EXPIRED])
def test_the_tab_follows_its_case_by_an_explicit_event(tab_state: TabState) -> None:
    assert next_state(tab_state, TAB_EVENT[CaseState.PAID]) is TabState.COLLECTED
    assert next_state(tab_state, TAB_EVENT[CaseState.WRITTEN_OFF]) is TabState.WRITTEN_OFF
    assert TAB_EVENT[CaseState.PAID] is TabEvent.COLLECT


def test_the_docs_diagram_is_generated_from_the_table() -> None:
    blocks = re.findall(r"```mermaid\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks[0] == mermaid()


def test_the_docs_retry_table_is_generated_from_the_one_rules_table() -> None:
    found = re.search(
        r"<!-- retry-table:start -->\n(.*?)<!-- retry-table:end -->", DOC.read_text(), flags=re.S
    )
    assert found is not None
    assert found[1] == retry_table_markdown()
