"""/openapi.json states what the server enforces: walked against the params the server checks
its inputs with, and probed at each bound against a real server process."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import api_contract
from server.api_contract import (
    CAP,
    ERRORS,
    FEED_TIMEOUT,
    OPEN_TAB_BODY,
    OVERLAY_BODY,
    PAYOUT_BODY,
    RAISE_CAP_BODY,
    TICKET_BODY,
    Body,
    Bounds,
    Param,
    QueryInteger,
)
from server.openapi import document
from tests.server.conftest import api
from tests.support.processes import TipmeterProcess

Pair = tuple[TipmeterProcess, TipmeterProcess]
BOUNDS = Bounds(
    cap_min_minor=100, cap_max_minor=1_000_000, ticket_ttl_s_max=300, feed_timeout_s_max=60
)
PARAMS = [v for v in vars(api_contract).values() if isinstance(v, Param)]
SERVER_DIR = Path(__file__).resolve().parents[2] / "server"


def _valid(schema: dict[str, Any], value: object) -> bool:
    """JSON Schema validation for the keywords the params use (type, bounds, enum, pattern)."""
    kind = schema.get("type")
    if kind == "integer" and (type(value) is not int):
        return False
    if kind == "string" and not isinstance(value, str):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int) and not (
        schema.get("minimum", value) <= value <= schema.get("maximum", value)
    ):
        return False
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and re.search(_python_regex(schema["pattern"]), value) is None:
            return False
    return True


def _python_regex(pattern: str) -> str:
    return pattern.replace("\\u", "\\u")  # ECMA's \\uXXXX is Python's too


def _probes(schema: dict[str, Any], example: object) -> Iterator[object]:
    """Values on both sides of each bound the schema states, and values of the wrong type."""
    yield from (None, True, 1.5, [], {})
    if example is not None:
        yield example
    if schema["type"] == "integer":
        low, high = schema["minimum"], schema["maximum"]
        yield from (low - 1, low, low + 1, high - 1, high, high + 1, str(low))
    else:
        yield from ("", "a", "A", "ab", "AB", "XYZ", "a b", "two\nlines", "tab\there", "x:y")
        yield from schema.get("enum", [])
        for n in (schema.get("minLength", 0), schema.get("maxLength", 64)):
            for length in (n - 1, n, n + 1):
                if length >= 0:
                    yield "a" * length
                    if isinstance(example, str) and example:
                        yield (example * (length // len(example) + 1))[:length]


@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.name)
def test_the_schema_accepts_exactly_what_the_server_accepts(param: Param) -> None:
    schema = param.schema(BOUNDS)
    for value in _probes(schema, param.example):
        if isinstance(param, QueryInteger):
            # A query parameter arrives as text: the schema speaks of the integer it spells.
            if type(value) is not int:
                continue
            accepted = param.accepts(str(value), BOUNDS)
        else:
            accepted = param.accepts(value, BOUNDS)
        assert accepted == _valid(schema, value), (param.name, value, schema)


def test_the_bounds_from_the_settings_are_the_servers() -> None:
    assert CAP.schema(BOUNDS)["minimum"] == BOUNDS.cap_min_minor
    assert CAP.schema(BOUNDS)["maximum"] == BOUNDS.cap_max_minor
    other = Bounds(cap_min_minor=7, cap_max_minor=70, ticket_ttl_s_max=9, feed_timeout_s_max=5)
    assert (CAP.schema(other)["minimum"], CAP.schema(other)["maximum"]) == (7, 70)
    assert FEED_TIMEOUT.schema(other)["x-capped-at"] == 5


def _schemas(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from _schemas(child)
    elif isinstance(node, list):
        for child in node:
            yield from _schemas(child)


def test_every_param_and_body_the_server_checks_is_in_the_document() -> None:
    doc = document("http://127.0.0.1", BOUNDS)
    found = list(_schemas(doc))
    for param in PARAMS:
        assert param.schema(BOUNDS) in found, f"{param.name} is not in /openapi.json"
    bodies: list[tuple[str, str, Body]] = [
        ("/v1/tabs", "post", OPEN_TAB_BODY),
        ("/v1/customers/{customer}/tabs/{tab_id}/cap", "post", RAISE_CAP_BODY),
        ("/v1/tickets", "post", TICKET_BODY),
        ("/v1/rooms/{room}/payout", "put", PAYOUT_BODY),
        ("/overlay/ticket", "post", OVERLAY_BODY),
    ]
    declared = [v for v in vars(api_contract).values() if isinstance(v, Body)]
    assert sorted(map(id, declared)) == sorted(id(body) for _, _, body in bodies)
    for path, method, body in bodies:
        content = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert content["schema"] == body.schema(BOUNDS)
        assert set(body.required) <= set(content["example"])


def test_every_operation_declares_its_errors_in_the_one_shape() -> None:
    doc = document("http://127.0.0.1", BOUNDS)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if path == "/openapi.json":
                continue
            errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
            assert errors, f"{method} {path} declares no error answers"
            for status, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema["required"] == ["error"], (path, status)
                codes = schema["properties"]["error"]["properties"]["code"]["enum"]
                assert all(ERRORS[c][0] == int(status) for c in codes if c in ERRORS), (
                    path,
                    status,
                    codes,
                )
    assert doc["components"]["schemas"]["TabState"]["enum"][0] == "open"


def _api_errors() -> Iterator[tuple[str, object, object]]:
    """Every ``ApiError(<status>, "<code>", …)`` written in the server package."""
    for path in sorted(SERVER_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ApiError"
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[1], ast.Constant)
            ):
                yield path.name, node.args[0].value, node.args[1].value


def test_every_error_code_the_server_answers_is_declared_with_its_status() -> None:
    seen = list(_api_errors())
    assert len(seen) > 30  # the walk reads the calls (a broken walk would pass vacuously)
    for where, status, code in seen:
        assert code in ERRORS, f"{where}: {code} is not in server.api_contract.ERRORS"
        assert ERRORS[code][0] == status, f"{where}: {code} answers {status}, declared otherwise"
    for param in PARAMS:
        assert ERRORS[param.code][0] == param.status, param.name


# -- against a real server: the document's bounds are where the server draws the line ----------


async def test_the_served_document_has_the_servers_bounds_and_the_server_holds_them(
    servers: Pair,
) -> None:
    a, _ = servers
    async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as http:
        doc = (await http.get("/openapi.json")).json()
    tabs = doc["paths"]["/v1/tabs"]["post"]["requestBody"]["content"]["application/json"]
    cap = tabs["schema"]["properties"]["cap_minor"]
    currencies = tabs["schema"]["properties"]["currency"]["enum"]
    tickets = doc["paths"]["/v1/tickets"]["post"]["requestBody"]["content"]["application/json"]
    ttl = tickets["schema"]["properties"]["ttl_s"]
    assert len(currencies) == 13
    assert "XYZ" not in currencies

    async def open_with(cap_minor: int, currency: str = "USD") -> httpx.Response:
        async with api(a) as http:
            return await http.post(
                "/v1/tabs",
                json={**tabs["example"], "cap_minor": cap_minor, "currency": currency},
                headers={"Idempotency-Key": f"bound-{cap_minor}-{currency}"},
            )

    for over in (cap["minimum"] - 1, cap["maximum"] + 1):
        refused = await open_with(over)
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, "cap_out_of_range")
    assert (await open_with(cap["maximum"])).status_code == 201
    refused = await open_with(cap["minimum"], currency="XYZ")
    assert refused.json()["error"]["code"] == "invalid_currency"

    async def ticket_with(**change: object) -> httpx.Response:
        async with api(a) as http:
            return await http.post("/v1/tickets", json={**tickets["example"], **change})

    assert (await ticket_with(ttl_s=ttl["maximum"])).status_code == 201
    assert (await ticket_with(ttl_s=ttl["maximum"] + 1)).status_code == 400
    assert (await ticket_with(ttl_s=ttl["minimum"] - 1)).status_code == 400
    name_max = tickets["schema"]["properties"]["name"]["maxLength"]
    assert (await ticket_with(name="n" * name_max)).status_code == 201
    assert (await ticket_with(name="n" * (name_max + 1))).status_code == 400
    assert (await ticket_with(name="two\nlines")).status_code == 400
    viewer_without_currency = {k: v for k, v in tickets["example"].items() if k != "currency"}
    async with api(a) as http:
        refused = await http.post("/v1/tickets", json=viewer_without_currency)
    assert refused.json()["error"]["code"] == "invalid_currency"
    assert tickets["schema"]["allOf"][0]["then"]["required"] == ["currency"]

    feed = doc["paths"]["/events/{room}/{token}/"]["get"]["parameters"]
    timeout = next(p for p in feed if p["name"] == "timeout")["schema"]
    async with api(a) as http:
        token = (await http.post("/v1/rooms/bounds-feed/feed-token")).json()
    async with httpx.AsyncClient(timeout=10) as http:
        at_min = await http.get(f"{token['feed_url']}?timeout={timeout['minimum']}")
        below = await http.get(f"{token['feed_url']}?timeout={timeout['minimum'] - 1}")
        above = await http.get(f"{token['feed_url']}?timeout={timeout['maximum'] + 1}")
    assert at_min.status_code == 200
    assert (below.status_code, above.status_code) == (400, 400)
    payout = doc["paths"]["/v1/rooms/{room}/payout"]["put"]["responses"]["200"]
    async with api(a) as http:
        answer = await http.put("/v1/rooms/bounds-feed/payout", json={"payout_bp": 10_000})
    assert set(answer.json()) == set(payout["content"]["application/json"]["schema"]["required"])
