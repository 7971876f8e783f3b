"""The tab lifecycle table, driven directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from metering.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    TabEvent,
    TabState,
    lua_states,
    mermaid,
    next_state,
    sources,
    target,
)
from tests.support.tables import reachable


def test_spending_and_raising_only_while_open() -> None:
    assert sources(TabEvent.SPEND) == {TabState.OPEN}
    assert sources(TabEvent.RAISE_CAP) == {TabState.OPEN}
    for state in TabState:
        if state is not TabState.OPEN:
            assert next_state(state, TabEvent.SPEND) is None


def test_the_happy_path() -> None:
    state = TabState.OPEN
    for event in (TabEvent.SPEND, TabEvent.RAISE_CAP, TabEvent.FREEZE, TabEvent.CAPTURE):
        after = next_state(state, event)
        assert after is not None
        state = after
    assert state is TabState.SETTLED
    assert state in TERMINAL


def test_a_declined_capture_is_collected_or_written_off_never_captured_again() -> None:
    assert next_state(TabState.SETTLING, TabEvent.DECLINE) is TabState.FAILED
    assert next_state(TabState.FAILED, TabEvent.CAPTURE) is None
    assert next_state(TabState.FAILED, TabEvent.COLLECT) is TabState.COLLECTED
    assert next_state(TabState.FAILED, TabEvent.WRITE_OFF) is TabState.WRITTEN_OFF


def test_every_state_is_reachable_from_open() -> None:
    assert reachable(TRANSITIONS, TabState.OPEN) == set(TabState)


def test_terminal_states_have_no_way_out() -> None:
    assert {TabState.SETTLED, TabState.COLLECTED, TabState.WRITTEN_OFF, TabState.VOIDED} == TERMINAL
    for state in TERMINAL:
        assert all(next_state(state, event) is None for event in TabEvent)


@pytest.mark.parametrize("event", list(TabEvent))
def test_each_event_has_exactly_one_target(event: TabEvent) -> None:
    assert target(event) in TabState
    assert {dst for (_, ev), dst in TRANSITIONS.items() if ev == event} == {target(event)}


def test_lua_encoding_wraps_states_in_commas() -> None:
    assert lua_states(frozenset({TabState.OPEN})) == ",open,"
    assert lua_states(sources(TabEvent.EXPIRE)) == ",open,settling,"


def test_the_docs_diagram_is_generated_from_the_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "lifecycle.md").read_text()
    assert mermaid() in doc, "docs/lifecycle.md is stale: paste metering.lifecycle.mermaid()"
