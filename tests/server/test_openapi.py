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

from server import api_contract, collection_contract, refunds_contract
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
from tests.support.conformance import answer_schema, problems
from tests.support.processes import TipmeterProcess

Pair = tuple[TipmeterProcess, TipmeterProcess]
BOUNDS = Bounds(
    cap_min_minor=100, cap_max_minor=1_000_000, ticket_ttl_s_max=300, feed_timeout_s_max=60
)
#: The modules that declare the API's params and bodies.
CONTRACTS = (api_contract, refunds_contract, collection_contract)
PARAMS = list(
    {id(v): v for c in CONTRACTS for v in vars(c).values() if isinstance(v, Param)}.values()
)
SERVER_DIR = Path(__file__).resolve().parents[2] / "server"


_TYPES: dict[str, Any] = {
    "integer": lambda v: type(v) is int,
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _valid(schema: dict[str, Any], value: object) -> bool:
    """JSON Schema validation for the keywords the params use (type, bounds, enum, pattern,
    anyOf, items, properties)."""
    if "anyOf" in schema:
        return any(_valid(option, value) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return False
    if isinstance(value, list):
        return len(value) <= schema.get("maxItems", len(value)) and all(
            _valid(schema.get("items", {}), each) for each in value
        )
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return all(name in value for name in schema.get("required", [])) and all(
            _valid(properties[name], each) for name, each in value.items() if name in properties
        )
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
    yield from (None, True, False, 1.5, [], {}, "", 0)
    if example is not None:
        yield example
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            yield from _probes(option, example)
    elif schema["type"] == "array":
        items = [each for each in _probes(schema["items"], None) if each is not None]
        for each in items:
            yield [each]
        good = [each for each in items if _valid(schema["items"], each)][:1]
        bad = [each for each in items if not _valid(schema["items"], each)][:1]
        for n in (schema["maxItems"] - 1, schema["maxItems"], schema["maxItems"] + 1):
            yield good * n
            yield good * (n - 1) + bad
    elif schema["type"] == "object":
        properties, required = schema["properties"], schema.get("required", [])
        whole = {name: _example(inner) for name, inner in properties.items()}
        yield whole
        for name in properties:
            yield {k: v for k, v in whole.items() if k != name}
            for each in _probes(properties[name], whole[name]):
                yield {**whole, name: each}
        yield {name: whole[name] for name in required}
    elif schema["type"] in ("boolean", "null"):
        return
    elif schema["type"] == "integer":
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


def _example(schema: dict[str, Any]) -> object:
    """A value ``schema`` accepts (from the probes of its own bounds)."""
    if "examples" in schema:
        return schema["examples"][0]
    return next(v for v in _probes(schema, None) if v is not None and _valid(schema, v))


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
        ("/v1/refunds", "post", refunds_contract.REFUND_BODY),
        ("/v1/refunds/{refund_id}/consent", "post", refunds_contract.CONSENT_BODY),
        ("/v1/sandbox/disputes", "post", refunds_contract.SANDBOX_DISPUTE_BODY),
        (
            "/v1/customers/{customer}/tabs/{tab_id}/refund-requests",
            "post",
            refunds_contract.REFUND_REQUEST_BODY,
        ),
        ("/v1/collection/cases/{case_id}/links", "post", collection_contract.LINK_BODY),
    ]
    declared = [v for c in CONTRACTS for v in vars(c).values() if isinstance(v, Body)]
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


async def test_the_refund_and_collection_bounds_in_the_document_are_the_servers(
    servers: Pair,
) -> None:
    a, _ = servers
    async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as http:
        doc = (await http.get("/openapi.json")).json()

    def body_of(path: str) -> dict[str, Any]:
        content: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"]
        schema: dict[str, Any] = content["application/json"]
        return schema

    # A refund of a tab that does not exist: refused by the bound at once, else looked for.
    refund = body_of("/v1/refunds")
    lines = refund["schema"]["properties"]["lines"]
    line_max = lines["items"]["anyOf"][0]["maxLength"]
    async with api(a) as http:
        at_max = await http.post(
            "/v1/refunds", json={**refund["example"], "lines": ["l"] * lines["maxItems"]}
        )
        longest = await http.post(
            "/v1/refunds", json={**refund["example"], "lines": ["l" * line_max]}
        )
        over = await http.post(
            "/v1/refunds", json={**refund["example"], "lines": ["l"] * (lines["maxItems"] + 1)}
        )
        too_long = await http.post(
            "/v1/refunds", json={**refund["example"], "lines": ["l" * (line_max + 1)]}
        )
    assert (at_max.status_code, at_max.json()["error"]["code"]) == (404, "not_found")
    assert (longest.status_code, longest.json()["error"]["code"]) == (404, "not_found")
    assert (over.status_code, over.json()["error"]["code"]) == (400, "invalid_field")
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "invalid_field")

    # A link for a case that does not exist: the limits are read before the case is looked for.
    link = body_of("/v1/collection/cases/{case_id}/links")
    failed = link["schema"]["properties"]["failed_max"]
    async with api(a) as http:
        at_max = await http.post(
            "/v1/collection/cases/no-such-case/links",
            json={**link["example"], "failed_max": failed["maximum"]},
        )
        over = await http.post(
            "/v1/collection/cases/no-such-case/links",
            json={**link["example"], "failed_max": failed["maximum"] + 1},
        )
    assert (at_max.status_code, at_max.json()["error"]["code"]) == (404, "case_not_found")
    assert (over.status_code, over.json()["error"]["code"]) == (400, "invalid_field")


def test_the_refund_dispute_and_collection_answers_are_declared_field_by_field() -> None:
    """The answers of these routes are exact objects in the document (every field named, no
    other allowed), so the answers the tests drive are checked against them."""
    paths = document("http://127.0.0.1", BOUNDS)["paths"]
    declared = {
        ("post", "/v1/refunds", "201"): "refund_id",
        ("get", "/v1/refunds/{refund_id}", "200"): "refund_id",
        ("post", "/v1/refunds/{refund_id}/consent", "200"): "consents",
        ("post", "/v1/sandbox/disputes", "201"): "dispute_id",
        ("get", "/v1/disputes/{dispute_id}", "200"): "fee_minor",
        ("get", "/v1/collection/cases/{case_id}", "200"): "attempts",
        ("post", "/v1/collection/cases/{case_id}/links", "201"): "url",
        ("post", "/v1/collection/cases/{case_id}/write-off", "200"): "history",
        ("get", "/v1/customers/{customer}/tabs/{tab_id}/collection", "200"): "state",
    }
    for (method, path, status), field in declared.items():
        schema = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
        assert schema["additionalProperties"] is False, (method, path)
        assert field in schema["required"], (method, path, field)


def test_an_answer_that_drifts_from_its_schema_is_caught() -> None:
    """The checker the tests' clients run finds a field the schema does not declare, one it
    lacks, a value of another type and a state outside its enum."""
    case = answer_schema(
        document("http://127.0.0.1", BOUNDS), "GET", "/v1/collection/cases/c1", 200
    )
    good = {
        name: 0 if spec.get("type") == "integer" or "anyOf" in spec else ""
        for name, spec in case["properties"].items()
    } | {"state": "open", "attempts": [], "history": []}
    assert list(problems(good, case)) == []
    assert list(problems({**good, "secret": 1}, case)) == ["$: 'secret' is not declared"]
    missing = {name: value for name, value in good.items() if name != "customer"}
    assert list(problems(missing, case)) == ["$: 'customer' is missing"]
    assert list(problems({**good, "amount_minor": "12"}, case)) == [
        "$.amount_minor: '12' is not of type integer"
    ]
    (wrong_state,) = problems({**good, "state": "lost"}, case)
    assert wrong_state.startswith("$.state: 'lost' is not one of")
