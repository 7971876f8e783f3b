"""A Stripe HTTP client for tests: records every request and answers from a script (recorded
HTTP), so each case of real traffic is replayed without a network."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import stripe

#: What a script answers: ``(status, body)`` or ``(status, body, headers)``.
Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]
#: ``(method, path, params) -> Reply``.
Script = Callable[[str, str, dict[str, list[str]]], Reply]


class Recording(stripe.HTTPClient):
    """Records every request; answers with the script's (status, body[, headers])."""

    name = "recording"

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.requests: list[tuple[str, str, dict[str, list[str]], Mapping[str, str]]] = []

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        parts = urlsplit(url)
        raw = post_data if method == "post" else parts.query
        params = parse_qs(raw.decode() if isinstance(raw, bytes) else (raw or ""))
        self.requests.append((method, parts.path, params, dict(headers)))
        reply = self.script(method, parts.path, params)
        extra = reply[2] if len(reply) == 3 else {}
        return orjson.dumps(reply[1]), reply[0], {"request-id": "req_1", **extra}

    async def close_async(self) -> None:
        """Nothing to close."""

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request, in order."""
        return [(m, p) for m, p, _, _ in self.requests]
