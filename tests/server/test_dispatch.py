"""The dispatch table routes every message a client may send, and nothing else."""

from __future__ import annotations

from typing import get_args

from clients.protocol import ClientMessage
from server.dispatch import HANDLERS


def test_every_client_message_has_exactly_one_route() -> None:
    assert set(HANDLERS) == set(get_args(ClientMessage))


def test_route_names_are_distinct_metric_labels() -> None:
    names = [route.name for route in HANDLERS.values()]
    assert len(set(names)) == len(names)
    assert all(name.isidentifier() and name.islower() for name in names)
