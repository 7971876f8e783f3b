"""The wire protocol without a network: every message, both codecs, and hostile frames."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients import protocol as p
from clients.protocol import Codec, ErrorCode, Invalid, Message, decode_client, decode_server

TAB = p.TabView("tab_1", "USD", "open", 5_000, 1_250, 7)
SESSION = p.SessionView("s-9", "alice", "private", "running", 600, 0, 1_700_000_000_000, 1, 10)
CLIENT_MESSAGES: list[Message] = [
    p.Tip("t-1", "alice", 500, "USD"),
    p.Tip("t-2", "alice", 1, "EUR", message="hi 💋", anonymous=True),
    p.Subscribe("alice"),
    p.Subscribe("alice", after="1700000000000-3", id="s-1"),
    p.Unsubscribe("alice", id="u-1"),
    p.Ping("p-1"),
    p.SessionStart("s-9", "alice", "private"),
    p.SessionStop("stop-1", "s-9"),
    p.SetRates("r-1", {"private": p.RateView(600, 60), "spy": p.RateView(200)}),
    p.RefundAnswer("a-1", "rf-1", True),
    p.RefundAnswer("a-2", "rf-2", False),
]
SERVER_MESSAGES: list[Message] = [
    p.Welcome(1, "viewer", "c42", "conn", 1_700_000_000_000, {"frame_bytes_max": 4096}, TAB, None),
    p.Welcome(1, "model", "alice", "conn", 1, {}, None, {"USD": 150}),
    p.Result("t-1", "applied", TAB, p.TipReceipt(3, 1_700_000_000_123)),
    p.Result("t-1", "duplicate", TAB, p.TipReceipt(3, 1_700_000_000_123)),
    p.Error("over_cap", "does not fit", "t-1", TAB, None),
    p.Error("rate_limited", "slow down", None, None, 250),
    p.TabUpdate(TAB),
    p.RoomEvent("alice", "1700000000000-0", "tip", {"amount_minor": 500, "name": "bob"}),
    p.Subscribed("alice", "s-1", gap=True),
    p.Unsubscribed("alice", "u-1"),
    p.Drain(2_500),
    p.Pong("p-1", 1_700_000_000_000),
    p.Result("s-9", "applied", p.TabView("tab_1", "USD", "open", 5_000, 10, 2, 600), None, SESSION),
    p.Error("insufficient_cap", "raise the cap", "s-9", TAB, None, 1_500),
    p.SessionUpdate(
        p.SessionView("s-9", "alice", "private", "ended", 600, 0, 1, 4, 40, "cap_reached", 5)
    ),
    p.Warning("tab_1", 59, 60),
    p.TabUpdate(p.TabView("tab_1", "USD", "open", 5_000, 10, 2, 600)),
    p.RefundsWaiting("alice", {}),
    p.RefundsWaiting(
        "alice",
        {
            "rf-1": p.RefundWaiting(
                "USD", 301, "technical_problem", "customer", 1, 2, {"tip:t1": 301}, "froze"
            ),
            "rf-0": p.RefundWaiting("USD", 50, "goodwill", "merchant", 0, 1, {"sess:s1": 50}),
        },
    ),
    # Memberships (issue 16): with and without allowances, a credit pending.
    p.SubscriptionUpdate(
        p.MembershipView("sub_1", "gold", "site", "gold", 3, "active", "USD", 2, 9, 8)
    ),
    p.SubscriptionUpdate(
        p.MembershipView(
            "sub_2",
            "club-1",
            "fan_club",
            "silver",
            2,
            "past_due",
            "EUR",
            1,
            9,
            8,
            room="alice",
            price_minor=990,
            adjustment_minor=-250,
            past_due_since_ms=7,
            features=["chat"],
            allowance=[p.AllowanceView("private", "seconds", 600, 0, 600)],
        )
    ),
]


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=repr)
def test_client_messages_round_trip(codec: Codec, message: Message) -> None:
    frame = p.encode(message, codec)
    assert isinstance(frame, bytes if codec is Codec.MSGPACK else str)
    assert decode_client(frame, codec) == message


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=repr)
def test_server_messages_round_trip(codec: Codec, message: Message) -> None:
    assert decode_server(p.encode(message, codec), codec) == message


def _json(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _tip(**change: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "tip",
        "id": "t-1",
        "room": "alice",
        "amount_minor": 500,
        "currency": "USD",
    }
    base.update(change)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (
            '{"type":"tip","id":"t","room":"r","amount_minor":500.0,"currency":"USD"}',
            ErrorCode.INVALID_AMOUNT,
        ),
        (
            '{"type":"tip","id":"t","room":"r","amount_minor":5e2,"currency":"USD"}',
            ErrorCode.INVALID_AMOUNT,
        ),
        (_json(_tip(amount_minor=True)), ErrorCode.INVALID_AMOUNT),
        (_json(_tip(amount_minor="500")), ErrorCode.INVALID_AMOUNT),
        (_json(_tip(amount_minor=-1)), ErrorCode.INVALID_AMOUNT),
        (_json(_tip(amount_minor=0)), ErrorCode.INVALID_AMOUNT),
        (_json(_tip(amount_minor=2**53)), ErrorCode.INVALID_AMOUNT),
        (_json(_tip(amount_minor=...)), ErrorCode.INVALID_AMOUNT),
        (
            '{"type":"tip","id":"t","room":"r","amount_minor":99999999999999999999,"currency":"USD"}',
            ErrorCode.INVALID_AMOUNT,
        ),
        (
            '{"type":"tip","id":"t","room":"r","amount_minor":NaN,"currency":"USD"}',
            ErrorCode.MALFORMED_FRAME,
        ),
        (_json(_tip(currency="usd")), ErrorCode.INVALID_CURRENCY),
        (_json(_tip(room="a:b")), ErrorCode.INVALID_ID),
        (_json(_tip(id=7)), ErrorCode.INVALID_ID),
        (_json(_tip(message="x" * 256)), ErrorCode.INVALID_FIELD),
        (_json(_tip(message="two\nlines")), ErrorCode.INVALID_FIELD),
        (_json(_tip(anonymous="yes")), ErrorCode.INVALID_FIELD),
        (_json({"type": "steal", "id": "x"}), ErrorCode.UNKNOWN_TYPE),
        (_json({"type": ["tip"]}), ErrorCode.UNKNOWN_TYPE),
        (_json([1, 2]), ErrorCode.MALFORMED_FRAME),
        ("not json", ErrorCode.MALFORMED_FRAME),
        (
            _json({"type": "subscribe", "room": "alice", "after": "yesterday"}),
            ErrorCode.INVALID_FIELD,
        ),
        (_json({"type": "ping"}), ErrorCode.INVALID_ID),
    ],
)
def test_json_frames_are_refused_with_a_code(frame: str, code: ErrorCode) -> None:
    decoded = decode_client(frame, Codec.JSON)
    assert isinstance(decoded, Invalid)
    assert decoded.code is code, decoded


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"tip","id":"t","room":"r","amount_minor":1,"amount_minor":99999,"currency":"USD"}',
        '{"type":"tip","id":"t","room":"r:x","amount_minor":1,"amount_minor":2,"currency":"USD"}',
        '{"type":"set_rates","id":"s","rates":{"private":{"rate_per_minute_minor":1,'
        '"rate_per_minute_minor":2}}}',
        '{"type":"ping","id":"p","type":"ping"}',
    ],
)
def test_a_json_frame_that_repeats_a_key_is_refused(frame: str) -> None:
    decoded = decode_client(frame, Codec.JSON)
    assert isinstance(decoded, Invalid)
    assert decoded.code is ErrorCode.DUPLICATE_KEY, decoded


def test_a_msgpack_frame_that_repeats_a_key_is_refused() -> None:
    # msgpack.packb cannot repeat a key: the map is written by hand (fixmap of 5 pairs).
    pairs = [("type", "tip"), ("id", "t"), ("amount_minor", 1), ("amount_minor", 99_999)]
    pairs.append(("currency", "USD"))
    frame = bytes([0x80 | len(pairs)]) + b"".join(
        msgpack.packb(k) + msgpack.packb(v) for k, v in pairs
    )
    decoded = decode_client(frame, Codec.MSGPACK)
    assert isinstance(decoded, Invalid)
    assert decoded.code is ErrorCode.DUPLICATE_KEY, decoded


def test_colons_in_strings_are_not_mistaken_for_repeated_keys() -> None:
    frame = _json(_tip(message="time: 10:30 :)", room="alice"))
    assert isinstance(decode_client(frame, Codec.JSON), p.Tip)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0-0", True),
        ("1700000000000-5", True),
        ("18446744073709551614-18446744073709551615", True),
        ("18446744073709551615-0", False),  # "after it" is past the last id Redis can hold
        ("0-18446744073709551616", False),
        ("99999999999999999999-0", False),
        ("1-", False),
        ("\u00b2-1", False),
    ],
)
def test_event_ids_are_ids_a_stream_can_hold(value: str, valid: bool) -> None:
    assert p.is_stream_id(value) is valid


def test_a_refusal_names_the_message_it_refuses() -> None:
    decoded = decode_client(_json(_tip(amount_minor=1.5)), Codec.JSON)
    assert isinstance(decoded, Invalid)
    assert decoded.id == "t-1"


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        (_tip(amount_minor=500.0), ErrorCode.INVALID_AMOUNT),
        (_tip(amount_minor=True), ErrorCode.INVALID_AMOUNT),
        (_tip(amount_minor=b"500"), ErrorCode.INVALID_AMOUNT),
        (_tip(currency=b"USD"), ErrorCode.INVALID_CURRENCY),
        ({1: "tip"}, ErrorCode.MALFORMED_FRAME),
    ],
)
def test_msgpack_frames_are_refused_with_a_code(obj: Any, code: ErrorCode) -> None:
    frame = msgpack.packb(obj, use_bin_type=True, strict_types=False)
    decoded = decode_client(frame, Codec.MSGPACK)
    assert isinstance(decoded, Invalid)
    assert decoded.code is code


def test_a_frame_of_the_wrong_kind_is_malformed() -> None:
    assert decode_client(b'{"type":"ping","id":"p"}', Codec.JSON) == Invalid(
        ErrorCode.MALFORMED_FRAME, "a JSON connection carries text frames"
    )
    decoded = decode_client('{"type":"ping","id":"p"}', Codec.MSGPACK)
    assert isinstance(decoded, Invalid)
    assert decoded.code is ErrorCode.MALFORMED_FRAME


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    frame = _json({**_tip(), "tip_jar_color": "pink"})
    assert decode_client(frame, Codec.JSON) == p.Tip("t-1", "alice", 500, "USD")


def test_negotiation() -> None:
    assert Codec.negotiate([]) is Codec.JSON
    assert Codec.negotiate(["tipmeter.v1.msgpack", "tipmeter.v1.json"]) is Codec.MSGPACK
    assert Codec.negotiate(["chat", "tipmeter.v1.json"]) is Codec.JSON
    assert Codec.negotiate(["tipmeter.v2.json"]) is None


def test_every_error_code_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    for code in ErrorCode:
        assert f"`{code}`" in doc, f"docs/protocol.md does not document {code}"


def test_wire_maps_use_the_documented_keys() -> None:
    assert p.to_map(p.Tip("t-1", "alice", 500, "USD")) == {
        "type": "tip",
        "id": "t-1",
        "room": "alice",
        "amount_minor": 500,
        "currency": "USD",
    }


# ------------------------------------------------------------------------------------------
# Hypothesis: no bytes, no structure, makes a decoder raise.

ALL_CODES = set(ErrorCode)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
TYPES = st.sampled_from(
    ["tip", "subscribe", "unsubscribe", "ping", "welcome", "result", "error", "event", "tab", "x"]
)
MESSAGES = st.fixed_dictionaries(
    {"type": TYPES},
    optional={
        "id": st.one_of(st.text(max_size=70), st.integers(), st.none()),
        "room": st.one_of(st.text(max_size=70), st.integers()),
        "amount_minor": st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=5)),
        "currency": st.one_of(st.text(max_size=4), st.integers()),
        "message": JSON_VALUES,
        "anonymous": JSON_VALUES,
        "after": st.one_of(st.text(max_size=30), st.integers()),
        "tab": JSON_VALUES,
        "limits": JSON_VALUES,
        "data": JSON_VALUES,
        "status": st.text(max_size=10),
        "code": JSON_VALUES,
    },
)


def _never_raises(decoded: object) -> None:
    if isinstance(decoded, Invalid):
        assert decoded.code in ALL_CODES


@given(st.binary(max_size=512))
def test_any_bytes_decode_to_a_message_or_a_code(data: bytes) -> None:
    _never_raises(decode_client(data, Codec.MSGPACK))
    _never_raises(decode_server(data, Codec.MSGPACK))
    _never_raises(decode_client(data, Codec.JSON))


@given(st.text(max_size=512))
def test_any_text_decodes_to_a_message_or_a_code(text: str) -> None:
    _never_raises(decode_client(text, Codec.JSON))
    _never_raises(decode_server(text, Codec.JSON))


@given(MESSAGES)
def test_any_map_decodes_to_a_message_or_a_code(obj: dict[str, Any]) -> None:
    for codec in Codec:
        try:
            frame = codec.dumps(obj)
        except (TypeError, OverflowError, orjson.JSONEncodeError):
            continue  # not representable in this codec (e.g. an integer beyond 64 bits)
        _never_raises(decode_client(frame, codec))
        _never_raises(decode_server(frame, codec))


@given(MESSAGES)
def test_a_decoded_tip_always_carries_a_valid_amount(obj: dict[str, Any]) -> None:
    try:
        frame = Codec.JSON.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return
    decoded = decode_client(frame, Codec.JSON)
    if isinstance(decoded, p.Tip):
        assert type(decoded.amount_minor) is int
        assert 0 < decoded.amount_minor < 2**53


def test_the_documented_examples_decode_identically_in_both_encodings() -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    pairs = re.findall(r"```json\n(.*?)\n```.*?```msgpack-hex\n(.*?)\n```", doc, re.S)
    # 18; refund_answer, refunds_waiting (docs/refunds.md); buy, fulfil, decline and a
    # purchase result (issue 17); subscription (issue 16)
    assert len(pairs) == 25
    for text, hexdump in pairs:
        frame = bytes.fromhex(hexdump.replace("\n", " "))
        as_json: object = decode_client(text, Codec.JSON)
        if isinstance(as_json, Invalid):
            as_json = decode_server(text, Codec.JSON)
            as_msgpack: object = decode_server(frame, Codec.MSGPACK)
        else:
            as_msgpack = decode_client(frame, Codec.MSGPACK)
        assert not isinstance(as_json, Invalid), text
        assert as_json == as_msgpack


@pytest.mark.parametrize(
    "features",
    ["chat", ["x"] * (p.MEMBERSHIP_FEATURES_MAX + 1), [1], ["x" * 65]],
    ids=["not a list", "too many", "not a string", "too long"],
)
def test_a_membership_s_lists_are_checked(features: object) -> None:
    message = p.to_map(
        p.SubscriptionUpdate(
            p.MembershipView("sub_1", "gold", "site", "gold", 3, "active", "USD", 2, 9, 8)
        )
    )
    message["subscription"]["features"] = features
    decoded = decode_server(orjson.dumps(message).decode(), Codec.JSON)
    assert isinstance(decoded, Invalid)
    assert decoded.code is p.ErrorCode.INVALID_FIELD
    assert "subscription.features" in decoded.message
