"""JSON logs: one object per line on standard error, never a secret in them.

Every record carries ``ts`` (ISO-8601 UTC), ``level``, ``logger`` and ``msg``, plus the fields
passed through ``extra={"fields": {...}}``. Field names that can hold credentials (tickets, API
keys, signatures, tokens, secrets, passwords, authorization headers) are replaced by
``"[redacted]"`` whatever the caller passes, so a careless log call cannot leak one. Messages
are scrubbed too: uvicorn logs each WebSocket handshake with its URL, and the URL carries the
ticket (``?ticket=…``), and feed URLs carry a room's token (``/events/<room>/<token>/``).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson

#: Substrings of field names whose values are never written.
SECRET_MARKERS: Final = (
    "ticket",
    "api_key",
    "apikey",
    "secret",
    "password",
    "token",
    "signature",
    "authorization",
    "cookie",
)
REDACTED: Final = "[redacted]"

#: Query parameters whose values are credentials, by their decoded, lower-cased name.
SECRET_PARAMS: Final = frozenset({"ticket", "token", "api_key", "key", "secret", "signature"})
_PARAM: Final = re.compile(r"([?&;])([^=&;\s\"'?]+)=([^&;\s\"']*)")
_FEED_TOKEN: Final = re.compile(r"(/events/[^/\s]+/)[^/\s?\"']+")


def _scrub_param(match: re.Match[str]) -> str:
    # By the decoded name: "?%74icket=" is "?ticket=" to the server, and must be to us too.
    name = unquote_plus(match.group(2)).strip().lower()
    if name in SECRET_PARAMS:
        return f"{match.group(1)}{match.group(2)}={REDACTED}"
    return match.group(0)


def scrub(text: str) -> str:
    """Replace credentials carried in URLs inside ``text``."""
    text = _PARAM.sub(_scrub_param, text)
    return _FEED_TOKEN.sub(rf"\1{REDACTED}", text)


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    """Return ``fields`` with every credential-like value replaced, recursively."""
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        if any(marker in name.lower() for marker in SECRET_MARKERS):
            clean[name] = REDACTED
        elif isinstance(value, dict):
            clean[name] = redact(value)
        else:
            clean[name] = value
    return clean


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` with its ``fields`` extra, redacted."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(redact(fields))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info") -> None:
    """Send every log record (ours, uvicorn's) as JSON to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Access lines would carry query strings, where broadcast tools put their tokens.
    logging.getLogger("uvicorn.access").disabled = True
