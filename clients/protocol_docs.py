"""Writes the generated parts of docs/protocol.md from the declarations in clients/protocol.py.

``python -m clients.protocol_docs`` rewrites every block of the page that lies between
``<!-- BEGIN GENERATED key -->`` and ``<!-- END GENERATED key -->``: each message's sender line,
field table and examples in both encodings (encoded by the protocol module itself, so they
cannot be wrong), the nested objects' tables, and the tables of error and close codes. The prose
around the blocks is written by hand. ``--check`` writes nothing and exits 1 when the page is not
current (tests/clients/test_protocol_docs.py runs it). A declared message with no block on the
page is an error: a new message needs a section.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from clients import protocol as p
from clients.codes import CloseCode, ErrorCode
from clients.declare import SPECS, Field, Spec
from clients.protocol import CLIENT_MESSAGES, SERVER_MESSAGES, Codec, Message, encode
from clients.tickets import Role

DOC: Final = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"

_TAB = p.TabView("tab_Q2x", "USD", "open", 5_000, 0, 1)
#: The examples the page shows, by message type (at least one per message).
EXAMPLES: Final[dict[str, list[Message]]] = {
    "tip": [p.Tip("tip-7f3a", "alice", 500, "USD", message="hi!")],
    "subscribe": [p.Subscribe("alice", after="1700000000000-0", id="sub-1")],
    "unsubscribe": [p.Unsubscribe("alice", id="unsub-1")],
    "session_start": [p.SessionStart("show-5b2e", "alice", "private")],
    "session_stop": [p.SessionStop("stop-1", "show-5b2e")],
    "set_rates": [
        p.SetRates("rates-1", {"private": p.RateView(600, 60), "spy": p.RateView(200, 0)})
    ],
    "ping": [p.Ping("ping-1")],
    # Purchases (issue 17, docs/purchases.md).
    "buy": [p.Buy("buy-3c9d", "alice", "dance", message="the slow one")],
    "fulfil": [p.Fulfil("done-1", "buy-3c9d")],
    "decline": [p.Decline("no-1", "buy-3c9d")],
    "welcome": [
        p.Welcome(
            1,
            "viewer",
            "c42",
            "Xk3d9f",
            1_700_000_000_000,
            {
                "frame_bytes_max": 4096,
                "tips_per_s_max": 10,
                "tips_burst_max": 20,
                "subscriptions_max": 8,
                "send_queue_frames_max": 256,
            },
            _TAB,
            None,
        )
    ],
    "result": [
        p.Result(
            "tip-7f3a",
            "applied",
            p.TabView("tab_Q2x", "USD", "open", 5_000, 500, 2),
            p.TipReceipt(1, 1_700_000_000_123),
        ),
        p.Result(
            "buy-3c9d",
            "applied",
            p.TabView("tab_Q2x", "USD", "open", 5_000, 800, 3),
            purchase=p.PurchaseInfo(
                "buy-3c9d", "alice", "dance", "Dance", "request", "pending", 300, 1_700_000_900_000
            ),
        ),
    ],
    "error": [
        p.Error(
            "over_cap",
            "the tip does not fit under the tab's cap; raise the cap",
            "tip-8b1c",
            p.TabView("tab_Q2x", "USD", "open", 5_000, 4_800, 9),
        )
    ],
    "tab": [p.TabUpdate(p.TabView("tab_Q2x", "USD", "open", 8_000, 4_800, 10))],
    "session": [
        p.SessionUpdate(
            p.SessionView(
                "show-5b2e",
                "alice",
                "private",
                "ended",
                600,
                60,
                1_700_000_000_000,
                754,
                7_540,
                "cap_reached",
                1_700_000_754_000,
            )
        )
    ],
    "warning": [p.Warning("tab_Q2x", 58, 60)],
    "event": [
        p.RoomEvent(
            "alice",
            "1700000000125-0",
            "tip",
            {
                "tip_id": "tip-7f3a",
                "amount_minor": 500,
                "currency": "USD",
                "name": "Bob",
                "anonymous": False,
                "message": "hi!",
                "at_ms": 1_700_000_000_123,
                "share_minor": 300,
                "earned_total_minor": 300,
            },
        )
    ],
    "subscribed": [p.Subscribed("alice", "sub-1", gap=False)],
    "unsubscribed": [p.Unsubscribed("alice", "unsub-1")],
    "drain": [p.Drain(2_350)],
    "pong": [p.Pong("ping-1", 1_700_000_000_050)],
    "refund_answer": [p.RefundAnswer("answer-1", "rq-7c1e", True)],
    "refunds_waiting": [
        p.RefundsWaiting(
            "alice",
            {
                "rq-7c1e": p.RefundWaiting(
                    "USD",
                    500,
                    "technical_problem",
                    "customer",
                    1_700_000_000_000,
                    1_700_086_400_000,
                    {"tip:tip-7f3a": 500},
                    "the stream froze",
                )
            },
        )
    ],
    # Memberships (issue 16).
    "subscription": [
        p.SubscriptionUpdate(
            p.MembershipView(
                subscription_id="sub_Jx2Qd",
                plan_id="gold-monthly",
                kind="site",
                level="gold",
                rank=3,
                state="trialing",
                currency="USD",
                period_no=0,
                period_ends_at_ms=1_700_604_800_000,
                updated_at_ms=1_700_000_000_000,
                price_minor=1_999,
                next_charge_at_ms=1_700_604_800_000,
                trial_ends_at_ms=1_700_604_800_000,
                features=["hd", "chat"],
                allowance=[p.AllowanceView("private", "seconds", 600, 90, 510)],
            )
        )
    ],
}

_BLOCK: Final = re.compile(
    r"(<!-- BEGIN GENERATED (?P<key>[a-z0-9:_-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED "
    r"(?P=key) -->)",
    re.S,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _presence(f: Field) -> str:
    if f.required:
        return "required"
    if f.sparse:
        if f.default is None:
            return "optional"
        return f"optional (default `{orjson.dumps(f.default).decode()}`)"
    if f.default is None:
        return "always sent, may be `null`"
    return "always sent"


def _field_table(spec: Spec[Any]) -> Iterator[str]:
    yield "| field | type | |"
    yield "| --- | --- | --- |"
    for f in spec.fields:
        what = _presence(f) + (f": {f.doc}" if f.doc else "")
        yield f"| `{f.name}` | {_cell(f.kind.describe())} | {_cell(what)} |"
    for c in spec.computed:
        what = "computed, may be `null`" if c.nullable else "computed"
        yield f"| `{c.name}` | {_cell(c.kind.describe())} | {_cell(f'{what}: {c.doc}')} |"


def _hexdump(frame: bytes) -> Iterator[str]:
    for start in range(0, len(frame), 16):
        yield " ".join(f"{b:02x}" for b in frame[start : start + 16])


def _examples(name: str) -> Iterator[str]:
    for message in EXAMPLES[name]:
        text, frame = encode(message, Codec.JSON), encode(message, Codec.MSGPACK)
        if not isinstance(text, str) or not isinstance(frame, bytes):
            raise TypeError("JSON frames are text and msgpack frames bytes")
        yield "JSON (`tipmeter.v1.json`):"
        yield ""
        yield "```json"
        yield text
        yield "```"
        yield ""
        yield "MessagePack (`tipmeter.v1.msgpack`), hex:"
        yield ""
        yield "```msgpack-hex"
        yield from _hexdump(frame)
        yield "```"


def _roles(senders: frozenset[str]) -> str:
    if senders == frozenset(Role):
        return "every role"
    return ", ".join(f"`{role}`" for role in Role if role in senders)


def _message(spec: Spec[Any]) -> Iterator[str]:
    if spec.senders:
        yield f"Sent by: {_roles(spec.senders)}."
        yield ""
    yield from _field_table(spec)
    yield ""
    yield from _examples(spec.name)


def _object(spec: Spec[Any]) -> Iterator[str]:
    yield f'<a id="object-{spec.name}"></a>{spec.doc.replace("``", "`")}'
    yield ""
    yield from _field_table(spec)


def _error_codes() -> Iterator[str]:
    yield "| code | retry with the same id? | meaning |"
    yield "| --- | --- | --- |"
    for code in ErrorCode:
        retry = "no"
        if code is ErrorCode.RATE_LIMITED:
            retry = "yes, after `retry_after_ms`"
        elif code.retryable:
            retry = "yes"
        yield f"| `{code}` | {retry} | {_cell(code.meaning)} |"


def _close_codes() -> Iterator[str]:
    yield "| code | meaning |"
    yield "| --- | --- |"
    for code in CloseCode:
        yield f"| {int(code)} | {_cell(code.meaning)} |"


def blocks() -> dict[str, str]:
    """Every generated block of the page, by key."""
    out: dict[str, Iterator[str]] = {}
    for registry in (CLIENT_MESSAGES, SERVER_MESSAGES):
        for name, spec in registry.specs.items():
            out[f"{registry.side}:{name}"] = _message(spec)
    for spec in SPECS.values():
        if not spec.message:
            out[f"object:{spec.name}"] = _object(spec)
    out["error-codes"] = _error_codes()
    out["close-codes"] = _close_codes()
    return {key: "\n".join(lines) + "\n" for key, lines in out.items()}


def render(page: str) -> str:
    """``page`` with every generated block written anew; ValueError if a block is missing
    or the page names a block nothing generates."""
    wanted = blocks()
    seen: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        key = match["key"]
        if key not in wanted:
            raise ValueError(f"docs/protocol.md has a block {key!r} that nothing generates")
        seen.add(key)
        return f"{match[1]}{wanted[key]}{match[4]}"

    out = _BLOCK.sub(fill, page)
    missing = sorted(set(wanted) - seen)
    if missing:
        raise ValueError(
            f"docs/protocol.md has no section for {', '.join(missing)}: add one with an empty "
            "block <!-- BEGIN GENERATED key --> … <!-- END GENERATED key -->, then run "
            "python -m clients.protocol_docs"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/protocol.md (or, with ``--check``, tell whether it is current)."""
    parser = argparse.ArgumentParser(prog="python -m clients.protocol_docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is not current")
    args = parser.parse_args(argv)
    page = DOC.read_text()
    try:
        new = render(page)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if new == page:
        return 0
    if args.check:
        print(
            "docs/protocol.md is not current: run python -m clients.protocol_docs",
            file=sys.stderr,
        )
        return 1
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
