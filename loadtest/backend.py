"""The cam-site backend the load generator plays: it mints tickets and opens, raises and settles
tabs, as a real site's backend would for its viewers and models.

Tickets are minted locally with the server's ticket secret (``clients.tickets``), tabs go
through the HTTP API with an API key (``http.client``, one kept-alive connection per user, which
gevent makes cooperative). No locust here: the users time these calls and report them.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from clients.protocol import TabView
from clients.tickets import Role, mint
from loadtest.config import ConfigError

#: Life of the tickets the generator mints: each opens one connection right away.
TICKET_TTL_MS: Final = 60_000
#: The server's development keys (``make run``), read when the environment names none.
DEV_KEYS_FILE: Final = "dev-keys.json"
#: The sandbox gateway's card that approves every hold.
SANDBOX_CARD: Final = "tok_visa"


class BackendError(Exception):
    """The HTTP API refused a call (``status``, ``code``) or could not be reached (status 0)."""

    def __init__(self, status: int, code: str, message: str = "", tab_id: str | None = None):
        super().__init__(f"HTTP {status} {code}: {message}".rstrip(": "))
        self.status = status
        self.code = code
        self.tab_id = tab_id


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the cam-site backend shares with the server: a ticket secret and an API key."""

    ticket_secret: bytes
    api_key: str
    issuer: str = "tipmeter"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Credentials:
        """The first of ``TIPMETER_TICKET_SECRETS`` and of ``TIPMETER_API_KEYS`` (the server's
        own variables); unset, the development keys of ``TIPMETER_DATA_DIR`` (``make run``)."""
        secret = env.get("TIPMETER_TICKET_SECRETS", "").split(",")[0].strip()
        key = env.get("TIPMETER_API_KEYS", "").split(",")[0].strip()
        issuer = env.get("TIPMETER_TICKET_ISSUERS", "tipmeter").split(",")[0].strip()
        if not (secret and key):
            path = Path(env.get("TIPMETER_DATA_DIR", ".tipmeter")) / DEV_KEYS_FILE
            try:
                dev = orjson.loads(path.read_bytes())
            except (OSError, ValueError):
                raise ConfigError(
                    "set TIPMETER_TICKET_SECRETS and TIPMETER_API_KEYS to the server's (make "
                    f"loadtest does), or run next to `make run`'s {path}"
                ) from None
            secret = secret or str(dev["ticket_secret"])
            key = key or str(dev["api_key"])
        return cls(ticket_secret=secret.encode(), api_key=key, issuer=issuer or "tipmeter")


def tab_view(body: Mapping[str, Any]) -> TabView:
    """The tab of an HTTP answer, as the protocol's clients see it."""
    return TabView(
        tab_id=str(body["tab_id"]),
        currency=str(body["currency"]),
        state=str(body["state"]),
        cap_minor=int(body["cap_minor"]),
        accrued_minor=int(body["accrued_minor"]),
        version=int(body["version"]),
    )


class Backend:
    """One user's view of the cam-site backend. Not thread-safe: one per user (greenlet)."""

    def __init__(self, base_url: str, credentials: Credentials, *, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the host must be an http:// or https:// URL, not {base_url!r}")
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._http: http.client.HTTPConnection | None = None
        scheme = "wss" if self._secure else "ws"
        self.ws_url = f"{scheme}://{parts.netloc}/ws"

    def ticket(self, role: Role, subject: str, currency: str = "") -> str:
        """A fresh single-use ticket for one connection."""
        return mint(
            self.credentials.ticket_secret,
            issuer=self.credentials.issuer,
            role=role,
            subject=subject,
            now_ms=time.time_ns() // 1_000_000,
            ttl_ms=TICKET_TTL_MS,
            name=subject,
            currency=currency,
        )

    def open_tab(self, customer: str, currency: str, cap_minor: int, key: str) -> TabView:
        """``POST /v1/tabs`` with the sandbox card; ``key`` is the Idempotency-Key."""
        body = {
            "customer": customer,
            "currency": currency,
            "cap_minor": cap_minor,
            "payment_method": SANDBOX_CARD,
        }
        return tab_view(self._call("POST", "/v1/tabs", body, {"Idempotency-Key": key}))

    def read_tab(self, customer: str, tab_id: str) -> TabView:
        """``GET`` a tab."""
        return tab_view(self._call("GET", f"/v1/customers/{customer}/tabs/{tab_id}", None))

    def raise_cap(self, customer: str, tab_id: str, cap_minor: int) -> TabView:
        """``POST …/cap``: raise the tab's cap (and its card hold)."""
        path = f"/v1/customers/{customer}/tabs/{tab_id}/cap"
        return tab_view(self._call("POST", path, {"cap_minor": cap_minor}))

    def settle(self, customer: str, tab_id: str) -> TabView:
        """``POST …/settle``: freeze the tab and queue its single capture."""
        return tab_view(self._call("POST", f"/v1/customers/{customer}/tabs/{tab_id}/settle", {}))

    def close(self) -> None:
        """Close the kept-alive connection."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._http is None:
            kind = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
            self._http = kind(self._host, self._port, timeout=self.timeout_s)
        return self._http

    def _send(
        self, method: str, path: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        connection = self._connection()
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    def _unreachable(self, exc: Exception) -> BackendError:
        self.close()
        code = "timeout" if isinstance(exc, TimeoutError) else "unreachable"
        return BackendError(0, code, str(exc))

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        sent = {"Authorization": f"Bearer {self.credentials.api_key}", **(headers or {})}
        payload = None
        if body is not None:
            payload = orjson.dumps(body)
            sent["Content-Type"] = "application/json"
        try:
            status, raw = self._send(method, path, payload, sent)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            # The server closes kept-alive connections that idle (uvicorn: after 5 s): send it
            # again once on a new one. Every call here is safe to repeat (idempotency keys).
            self.close()
            try:
                status, raw = self._send(method, path, payload, sent)
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        try:
            answer = orjson.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise BackendError(status, "malformed_answer", raw[:200].decode(errors="replace"))
        if status >= 400:
            error = answer.get("error")
            if not isinstance(error, dict):
                raise BackendError(status, "malformed_answer", str(answer)[:200])
            tab_id = error.get("tab_id")
            raise BackendError(
                status,
                str(error.get("code")),
                str(error.get("message", "")),
                tab_id if isinstance(tab_id, str) else None,
            )
        return answer
