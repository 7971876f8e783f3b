"""The protocol's declarations: the generated docs are current, and misdeclarations fail early."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from clients import protocol_docs
from clients.codes import CLOSE_MEANINGS, ERROR_MEANINGS, CloseCode, ErrorCode
from clients.declare import Id, Registry
from clients.protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    Ping,
    SessionStop,
    SetRates,
    Subscribe,
    Tip,
    may_send,
)
from clients.tickets import Role


def test_the_committed_protocol_page_is_what_the_generator_writes() -> None:
    page = protocol_docs.DOC.read_text()
    assert protocol_docs.render(page) == page, "run: python -m clients.protocol_docs"
    assert protocol_docs.main(["--check"]) == 0


def test_a_stale_page_is_reported_and_a_missing_section_named() -> None:
    page = protocol_docs.DOC.read_text()
    stale = page.replace("| `amount_minor` | integer 1 … 2^53-1 |", "| `amount_minor` | int |")
    assert stale != page
    assert protocol_docs.render(stale) == page
    without_ping = page.replace("<!-- BEGIN GENERATED client:ping -->", "<!-- ping -->")
    with pytest.raises(ValueError, match="client:ping"):
        protocol_docs.render(without_ping)


def test_every_message_has_an_example_and_every_code_a_meaning() -> None:
    for registry in (CLIENT_MESSAGES, SERVER_MESSAGES):
        for name in registry.specs:
            assert protocol_docs.EXAMPLES[name], name
    assert set(ERROR_MEANINGS) == set(ErrorCode)
    assert set(CLOSE_MEANINGS) == set(CloseCode)


def test_the_declarations_say_which_role_may_send_what() -> None:
    tip, stop = Tip("t", "alice", 1, "USD"), SessionStop("s", "x")
    assert [r for r in Role if may_send(tip, r)] == [Role.VIEWER]
    assert [r for r in Role if may_send(stop, r)] == [Role.VIEWER, Role.MODEL]
    assert [r for r in Role if may_send(SetRates("r", {}), r)] == [Role.MODEL]
    assert all(may_send(Ping("p"), r) and may_send(Subscribe("a"), r) for r in Role)
    # Every client message names its senders; the server's messages name none.
    assert all(spec.senders for spec in CLIENT_MESSAGES.specs.values())
    assert not any(spec.senders for spec in SERVER_MESSAGES.specs.values())


def test_a_field_without_a_wire_type_is_refused_at_declaration() -> None:
    with pytest.raises(TypeError, match=r"Loose\.note has no wire type"):

        @Registry("test").message("loose")
        @dataclass
        class Loose:
            id: Annotated[str, Id()]
            note: str


def test_two_messages_of_one_type_are_refused_at_declaration() -> None:
    registry = Registry("test")

    @registry.message("same")
    @dataclass
    class First:
        id: Annotated[str, Id()]

    with pytest.raises(TypeError, match="two test messages have the type 'same'"):

        @registry.message("same")
        @dataclass
        class Second:
            id: Annotated[str, Id()]
