"""Frames: the two encodings of the wire protocol, and strict decoding of each.

A frame is one WebSocket message. ``tipmeter.v1.json`` carries JSON in text frames (orjson,
integers stay integers, no NaN); ``tipmeter.v1.msgpack`` carries MessagePack maps in binary
frames. Both carry the same maps; :mod:`clients.protocol` turns the maps into messages. A map
that repeats a key is refused in both (:class:`DuplicateKey`), so that a proxy that reads the
first value and a server that applies the last can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

import msgpack
import orjson

JSON_SUBPROTOCOL: Final = "tipmeter.v1.json"
MSGPACK_SUBPROTOCOL: Final = "tipmeter.v1.msgpack"


class Codec(Enum):
    """A frame encoding, chosen per connection by its WebSocket subprotocol."""

    JSON = JSON_SUBPROTOCOL
    MSGPACK = MSGPACK_SUBPROTOCOL

    @property
    def subprotocol(self) -> str:
        """The subprotocol name that selects this codec."""
        return self.value

    @property
    def binary(self) -> bool:
        """True when frames are binary (msgpack), False for text frames (JSON)."""
        return self is Codec.MSGPACK

    @classmethod
    def negotiate(cls, offered: list[str] | tuple[str, ...]) -> Codec | None:
        """Pick the first codec the client offered (JSON when it offered none); None if it
        offered only subprotocols this server does not speak."""
        if not offered:
            return cls.JSON
        for name in offered:
            for codec in cls:
                if codec.value == name:
                    return codec
        return None

    def dumps(self, obj: Mapping[str, Any]) -> bytes | str:
        """Encode one message map as a frame (bytes for msgpack, str for JSON)."""
        if self is Codec.MSGPACK:
            return msgpack.packb(obj, use_bin_type=True)
        return orjson.dumps(obj).decode()

    def loads(self, frame: bytes | str) -> object:
        """Decode one frame into Python values; raise ValueError if it is not well-formed
        (:class:`DuplicateKey` if a map repeats a key)."""
        if self is Codec.MSGPACK:
            if not isinstance(frame, bytes | bytearray):
                raise ValueError("a msgpack connection carries binary frames")
            try:
                return msgpack.unpackb(
                    frame, raw=False, strict_map_key=True, object_pairs_hook=_unique_pairs
                )
            except DuplicateKey:
                raise
            except Exception as exc:  # msgpack raises several unrelated types
                raise ValueError(f"not msgpack: {exc}") from None
        if not isinstance(frame, str):
            raise ValueError("a JSON connection carries text frames")
        return loads_json(frame)


class DuplicateKey(ValueError):
    """A map (JSON object, msgpack map) repeats a key. Decoders keep the last value, so
    ``{"amount_minor": 1, "amount_minor": 99999}`` would be read differently by a proxy that
    checks the first and a server that applies the last: such input is refused."""

    def __init__(self, key: object) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _unique_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """An ``object_pairs_hook``: the map of ``pairs``, or DuplicateKey."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[Any] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def _key_count(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_key_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_key_count(v) for v in value)
    return 0


def loads_json(text: str | bytes) -> object:
    """Decode JSON strictly (orjson: integers stay integers, no NaN); raise ValueError if it
    is not JSON, :class:`DuplicateKey` if an object repeats a key.

    orjson keeps the last of repeated keys silently, so the input is checked too, cheaply:
    every key is followed by exactly one ``:`` outside strings, so when the text holds no more
    colons than the decoded value has keys, no key can have been dropped. Otherwise (a colon
    in a string, or a repeated key) the standard library's decoder, which reports every pair,
    settles it."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    colons = text.count(":") if isinstance(text, str) else text.count(b":")
    if colons > _key_count(value):
        try:
            json.loads(text, object_pairs_hook=_unique_pairs)
        except RecursionError:
            raise ValueError("not JSON: nested too deeply") from None
    return value
