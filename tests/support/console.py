"""Helpers for the operator console's tests: operators made by the real ``tipmeter admin
create`` command, and logged-in HTTP clients."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import psycopg

from server.console import auth
from tests.support.processes import VENV_BIN, TipmeterProcess

#: A password long enough for the console's rules, shared by the tests' operators.
PASSWORD = "correct horse battery staple"


def create_operator(
    server: TipmeterProcess, name: str, role: str = "admin", password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    """Run ``tipmeter admin create`` against ``server``'s database; the finished process."""
    return subprocess.run(
        [str(VENV_BIN / "tipmeter"), "admin", "create", name, "--role", role],
        env=server.env,
        input=password + "\n",
        cwd=server.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def insert_operator(
    server: TipmeterProcess, name: str, role: str, password: str = PASSWORD
) -> None:
    """Add an operator straight to ``server``'s database (quicker than the CLI, which one test
    per module runs for real)."""
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO operators (operator_id, role, password_hash, created_at) "
            "VALUES (%s, %s, %s, now())",
            (name, role, auth.hash_password(password)),
        )


#: One operator of each role, as the console's tests name them.
OPERATORS = (("ada", "admin"), ("sam", "support"), ("rio", "read_only"))


def insert_operators(server: TipmeterProcess) -> None:
    """Add :data:`OPERATORS` straight to ``server``'s database."""
    for name, role in OPERATORS:
        insert_operator(server, name, role)


class ConsoleClient:
    """An HTTP client of the console's API holding one operator's session (cookie and token)."""

    def __init__(self, server: TipmeterProcess) -> None:
        self.http = httpx.AsyncClient(base_url=server.base_url, timeout=30)
        self.csrf = ""

    async def __aenter__(self) -> ConsoleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        """Log in; keep the session's CSRF token on success."""
        response = await self.http.post(
            "/console/api/login", json={"operator": name, "password": password}
        )
        if response.status_code == 200:
            self.csrf = response.json()["csrf_token"]
        return response

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """A GET of the console's API."""
        return await self.http.get(path, **kwargs)

    async def post(self, path: str, body: Any = None, *, csrf: bool = True) -> httpx.Response:
        """A POST with the CSRF token (unless ``csrf`` is False)."""
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return await self.http.post(path, json=body if body is not None else {}, headers=headers)


async def logged_in(server: TipmeterProcess, name: str) -> ConsoleClient:
    """A client logged in as ``name`` (which must exist)."""
    client = ConsoleClient(server)
    response = await client.login(name)
    assert response.status_code == 200, response.text
    return client
