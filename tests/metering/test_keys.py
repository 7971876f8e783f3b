"""Key names: one hash tag per customer or room, and ids that cannot break out of a key."""

from __future__ import annotations

import inspect

import pytest
from redis.crc import key_slot

from metering import keys
from metering.errors import InvalidArgument
from metering.outcomes import RoomEventDraft
from metering.scripts import TipItem, _relay_keys, _tip_keys


def _tag(key: str) -> str:
    return key[key.index("{") : key.index("}") + 1]


def test_every_key_of_a_tip_shares_the_customers_tag_and_slot() -> None:
    item = TipItem("c42", "tip1", "tab_x", "room7", 100, "USD", 6_000, "", False, "")
    tip_keys = _tip_keys(item)
    assert {_tag(k) for k in tip_keys} == {"{c:c42}"}
    assert len({key_slot(k.encode()) for k in tip_keys}) == 1


def test_every_key_of_a_relay_shares_the_rooms_tag_and_slot() -> None:
    draft = RoomEventDraft("c42", "room7", "tip:c42:tip1", "tip", b"", "USD", 60)
    relay_keys = _relay_keys(draft)
    assert {_tag(k) for k in relay_keys} == {"{r:room7}"}
    assert len({key_slot(k.encode()) for k in relay_keys}) == 1


@pytest.mark.parametrize("bad", ["", "a:b", "{x}", "a}b", "a b", "x" * 65, "é", None, 7])
def test_ids_that_could_break_a_key_are_refused(bad: object) -> None:
    assert not keys.is_id(bad)
    with pytest.raises(InvalidArgument):
        keys.check_id("customer", bad)


def test_good_ids() -> None:
    for good in ("42", "user_1", "a.b-c", "x" * 64):
        assert keys.check_id("customer", good) == good


def test_the_tab_index_shard_is_stable_and_in_range() -> None:
    shards = {keys.tab_index_shard(f"c{n}") for n in range(1_000)}
    assert shards == set(range(keys.TAB_INDEX_SHARDS))
    assert keys.tab_index_shard("c1") == keys.tab_index_shard("c1")


#: The placeholder the module's key table writes for each parameter of a key builder.
_PLACEHOLDERS = {
    "customer": "C",
    "tab_id": "T",
    "currency": "CUR",
    "op_id": "ID",
    "session_id": "S",
    "room": "R",
    "shard": "N",
    "owner": "O",
    "ticket_id": "J",
    "purchase_id": "P",
}
#: Functions of the module that build no key of their own.
_NOT_KEYS = {"check_id", "is_id", "customer_tag", "room_tag", "tab_index_shard", "tab_index_member"}


def test_the_key_table_lists_every_key_the_module_builds() -> None:
    builders = [
        (name, value)
        for name, value in vars(keys).items()
        if inspect.isfunction(value) and value.__module__ == keys.__name__ and name not in _NOT_KEYS
    ]
    assert len(builders) > 20
    table = keys.__doc__ or ""
    for name, build in builders:
        args = [_PLACEHOLDERS[param] for param in inspect.signature(build).parameters]
        assert f"``{build(*args)}``" in table, f"keys.{name} is missing from the key table"
