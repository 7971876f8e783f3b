"""JSON logs never carry credentials, whatever the caller logs."""

from __future__ import annotations

import logging

import orjson
import pytest

from server.logs import REDACTED, JsonFormatter, redact, scrub


def test_credential_fields_are_redacted() -> None:
    assert redact(
        {"ticket": "v1.a.b", "api_key": "k", "nested": {"Authorization": "Bearer x"}, "room": "r"}
    ) == {
        "ticket": "[redacted]",
        "api_key": "[redacted]",
        "nested": {"Authorization": "[redacted]"},
        "room": "r",
    }


def test_urls_in_messages_are_scrubbed() -> None:
    line = '127.0.0.1:5 - "WebSocket /ws?ticket=v1.abc.def&x=1" [accepted]'
    assert scrub(line) == '127.0.0.1:5 - "WebSocket /ws?ticket=[redacted]&x=1" [accepted]'
    assert scrub("GET /events/alice/s3cr3t-T0ken/?i=1-0") == "GET /events/alice/[redacted]/?i=1-0"


@pytest.mark.parametrize(
    "query",
    [
        "%74icket=SECRET",
        "%54ICKET=SECRET",
        "tic%6Bet=SECRET",
        "x=1&%74oken=SECRET",
        "Ticket=SECRET",
    ],
)
def test_credentials_are_scrubbed_by_the_decoded_parameter_name(query: str) -> None:
    line = f'127.0.0.1:5 - "WebSocket /ws?{query}" 401'
    assert "SECRET" not in scrub(line)
    assert REDACTED in scrub(line)


def test_a_record_is_one_json_object() -> None:
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "open %s", ("/ws?ticket=v1.x.y",), None
    )
    record.fields = {"connection": "c1", "secret": "s"}
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["msg"] == "open /ws?ticket=[redacted]"
    assert (entry["connection"], entry["secret"], entry["level"]) == ("c1", "[redacted]", "info")
