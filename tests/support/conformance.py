"""Check the server's JSON answers against the schemas its own ``/openapi.json`` declares.

An httpx response hook (:func:`conformance_hook`) finds each answer's operation and status in
the served document and fails the request when the answer has a field the schema does not
declare, lacks one it requires, or carries a value of another type: the document cannot drift
from what the server answers on any route a test drives. It reads the subset of JSON Schema the
document uses for answers: ``type``, ``enum``, ``anyOf``, ``properties``, ``required``,
``additionalProperties: false``, ``items`` and ``format: date-time``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any, Final

import httpx

from tests.support.processes import TipmeterProcess

#: JSON types by name, as JSON Schema's ``type`` names them (a bool is not an integer).
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def problems(value: Any, schema: dict[str, Any], where: str = "$") -> Iterator[str]:
    """What in ``value`` does not conform to ``schema`` (nothing when it conforms)."""
    if "anyOf" in schema:
        options = [list(problems(value, option, where)) for option in schema["anyOf"]]
        if all(options):
            yield f"{where}: {value!r} is none of {schema['anyOf']}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r} is not one of {schema['enum']}"
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        yield f"{where}: {value!r} is not of type {kind}"
        return
    if schema.get("format") == "date-time" and isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            yield f"{where}: {value!r} is not a date-time"
    pattern = schema.get("pattern")
    if pattern and isinstance(value, str) and not re.search(pattern, value):
        yield f"{where}: {value!r} does not match {pattern}"
    if isinstance(value, dict):
        declared = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                yield f"{where}: {name!r} is missing"
        for name, item in value.items():
            if name in declared:
                yield from problems(item, declared[name], f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                yield f"{where}: {name!r} is not declared"
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from problems(item, schema["items"], f"{where}[{index}]")


def _template(path: str) -> re.Pattern[str]:
    """A document path (``/v1/refunds/{refund_id}``) as a pattern of request paths."""
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")


def answer_schema(document: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The schema ``document`` declares for ``method path``'s answer of ``status``; fails the
    test when the document has no such operation or status."""
    matching = [p for p in document["paths"] if _template(p).match(path)]
    # A literal segment wins over a parameter (``/v1/disputes/ratio`` over ``{dispute_id}``).
    matching.sort(key=lambda p: p.count("{"))
    assert matching, f"{path} is not in the document"
    operation = document["paths"][matching[0]].get(method.lower())
    assert operation is not None, f"{method} {matching[0]} is not in the document"
    declared = operation["responses"].get(str(status))
    assert declared is not None, f"{method} {matching[0]} declares no {status} answer"
    schema: dict[str, Any] = declared["content"]["application/json"]["schema"]
    return schema


def conformance_hook(
    document: dict[str, Any], checked: Callable[[str], bool]
) -> Callable[[httpx.Response], Awaitable[None]]:
    """A response hook that checks every JSON answer to a path that ``checked`` accepts against
    the schema ``document`` declares for it."""

    async def check(response: httpx.Response) -> None:
        path = response.request.url.path
        if not checked(path) or "json" not in response.headers.get("content-type", ""):
            return
        await response.aread()
        schema = answer_schema(document, response.request.method, path, response.status_code)
        found = list(problems(response.json(), schema))
        assert not found, f"{response.request.method} {path} {response.status_code}: {found}"

    return check


#: The routes whose answers the tests check against the served document: refunds, disputes and
#: collection (their answers are declared field by field).
CHECKED_PREFIXES: Final = ("/v1/refunds", "/v1/disputes", "/v1/sandbox/disputes", "/v1/collection")


def is_checked(path: str) -> bool:
    """Whether the answers of ``path`` are checked."""
    return path.startswith(CHECKED_PREFIXES) or (
        path.startswith("/v1/customers/") and path.endswith("/collection")
    )


def checked_answers(server: TipmeterProcess) -> Callable[[httpx.Response], Awaitable[None]]:
    """The response hook for a client of ``server``: its refunds, disputes and collection
    answers checked against its own ``/openapi.json``."""
    return conformance_hook(server.openapi(), is_checked)
