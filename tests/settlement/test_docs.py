"""docs/settlement.md: its state diagram is the generated one, its verification example works."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metering.lifecycle import mermaid
from settlement.webhooks import sign

DOC = Path(__file__).parents[2] / "docs" / "settlement.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def _integrators_example() -> tuple[Callable[..., bool], Callable[..., bool]]:
    """``handle`` and ``verify`` of the docs' example."""
    namespace: dict[str, Any] = {}
    exec(_blocks("python")[0], namespace)  # noqa: S102 - the docs' own example, run as written
    return namespace["handle"], namespace["verify"]


def test_the_state_diagram_is_generated_from_the_lifecycle_table() -> None:
    assert _blocks("mermaid") == [mermaid()]


def test_the_integrators_example_verifies_and_refuses() -> None:
    handle, verify = _integrators_example()
    body = b'{"id":"evt_1","type":"tab.settled"}'
    now = int(time.time())
    good = sign(body, "whsec", now)
    assert handle(body, good, "whsec")
    assert verify(body, good, "whsec")
    assert not handle(body + b" ", good, "whsec")
    assert not verify(body + b" ", good, "whsec")
    stale = sign(body, "whsec", now - 301)
    assert not handle(body, stale, "whsec")
    assert not verify(body, stale, "whsec")
    assert not verify(body, "garbage", "whsec")


def test_both_checks_agree_and_never_raise_on_odd_headers() -> None:
    handle, verify = _integrators_example()
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    good = sign(body, "whsec", now)
    stamp, mac = good.split(",")
    cases = {
        good: True,
        f"{stamp}, {mac}": True,  # a space after the comma
        f" {stamp} , {mac} ": True,
        f"t=\u00b2,{mac}": False,  # str.isdigit() says yes, int() raises
        f"{stamp},v1=\u00e9\u00e9": False,  # compare_digest raises on non-ASCII str
        f"{stamp},{stamp},{mac}": False,  # two timestamps
        f"{stamp}": False,
        "": False,
        f"t={now}{'9' * 30},{mac}": False,
    }
    for header, accepted in cases.items():
        assert handle(body, header, "whsec") is accepted, header
        assert verify(body, header, "whsec") is accepted, header
