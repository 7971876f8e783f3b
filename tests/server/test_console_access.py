"""The console's access rules against a real server and database: operators made by the CLI,
argon2 hashes, the signed HttpOnly SameSite=Strict cookie, CSRF, lockout, roles, the audit
log — and that neither the API key nor the demo backend opens the console."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
import pytest_asyncio

from server.console import auth
from tests.support.console import (
    PASSWORD,
    ConsoleClient,
    create_operator,
    insert_operator,
    logged_in,
)
from tests.support.processes import API_KEY, TipmeterProcess, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    """A server with the demo backend on (it must not open the console) and three operators."""
    with serving(tmp_path_factory, "console", {"TIPMETER_DEMO_API": "on"}) as process:
        made = create_operator(process, "ada", "admin")
        assert made.returncode == 0, made.stderr
        insert_operator(process, "sam", "support")
        insert_operator(process, "rio", "read_only")
        yield process


@pytest_asyncio.fixture(loop_scope="module")
async def admin(server: TipmeterProcess) -> AsyncIterator[ConsoleClient]:
    async with await logged_in(server, "ada") as client:
        yield client


def audit_lines(server: TipmeterProcess, operator: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT action, outcome, remote_addr FROM console_audit WHERE operator_id = %s "
            "ORDER BY audit_no",
            (operator,),
        ).fetchall()
    return [(str(a), str(o), str(r)) for a, o, r in rows]


async def test_the_cli_stores_an_argon2_hash_and_refuses_a_second_operator_of_the_name(
    server: TipmeterProcess,
) -> None:
    again = create_operator(server, "ada")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    short = create_operator(server, "newbie", password="short")
    assert short.returncode == 2
    assert "12 to 256" in short.stderr
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT password_hash FROM operators WHERE operator_id = 'ada'"
        ).fetchone()
    assert row is not None
    assert str(row[0]).startswith("$argon2id$")
    assert PASSWORD not in str(row[0])


async def test_login_sets_a_signed_httponly_samesite_strict_cookie(server: TipmeterProcess) -> None:
    async with ConsoleClient(server) as client:
        response = await client.login("ada")
        assert response.status_code == 200
        assert response.json()["role"] == "admin"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/console" in cookie
        me = await client.get("/console/api/me")
        assert me.status_code == 200
        assert me.json()["operator"] == "ada"
    assert ("login", "ok", "127.0.0.1") in audit_lines(server, "ada")


async def test_an_altered_cookie_or_none_is_refused(server: TipmeterProcess) -> None:
    async with ConsoleClient(server) as client:
        assert (await client.get("/console/api/me")).status_code == 401
        await client.login("ada")
        value = client.http.cookies[auth.COOKIE_NAME]
        client.http.cookies.clear()
        forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
        response = await client.http.get(
            "/console/api/me", headers={"Cookie": f"{auth.COOKIE_NAME}={forged}"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "login_required"


async def test_the_api_key_and_the_demo_backend_never_open_the_console(
    server: TipmeterProcess,
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        keyed = await http.get("/console/api/me", headers={"Authorization": f"Bearer {API_KEY}"})
        assert keyed.status_code == 401
        audit = await http.get("/console/api/audit", headers={"Authorization": f"Bearer {API_KEY}"})
        assert audit.status_code == 401
        # The demo backend is on here; what it hands out (tickets, tabs) is no console session.
        demo = await http.get("/demo/config")
        assert demo.status_code == 200
        assert auth.COOKIE_NAME not in demo.cookies
        assert (await http.get("/console/api/me")).status_code == 401
        # The API key is not a password either.
        login = await http.post("/console/api/login", json={"operator": "ada", "password": API_KEY})
        assert login.status_code == 401


async def test_every_action_needs_the_csrf_token(server: TipmeterProcess) -> None:
    client = await logged_in(server, "sam")
    async with client:
        refused = await client.post("/console/api/logout", csrf=False)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
        assert (await client.get("/console/api/me")).status_code == 200
        done = await client.post("/console/api/logout")
        assert done.status_code == 200
        # The session row is ended: the same cookie, replayed, no longer opens anything.
        assert (await client.get("/console/api/me")).status_code == 401
    assert ("logout", "csrf_failed", "127.0.0.1") in audit_lines(server, "sam")


async def test_a_login_from_another_site_is_refused(server: TipmeterProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.post(
            "/console/api/login",
            json={"operator": "ada", "password": PASSWORD},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status_code == 403
        form = await http.post("/console/api/login", data={"operator": "ada", "password": PASSWORD})
        assert form.status_code == 415


async def test_repeated_failures_lock_the_account_even_for_the_right_password(
    server: TipmeterProcess,
) -> None:
    insert_operator(server, "lou", "support")
    async with ConsoleClient(server) as client:
        for _ in range(auth.LOGIN_FAILURES_MAX - 1):
            response = await client.login("lou", "not the password at all")
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "login_failed"
        last = await client.login("lou", "not the password at all")
        assert last.status_code == 401
        locked = await client.login("lou")
        assert locked.status_code == 423
        assert locked.json()["error"]["code"] == "locked"
    outcomes = [outcome for action, outcome, _ in audit_lines(server, "lou")]
    assert outcomes == [
        *["login_failed"] * (auth.LOGIN_FAILURES_MAX - 1),
        "login_failed_locked",
        "locked",
    ]


async def test_an_unknown_name_is_answered_like_a_wrong_password(server: TipmeterProcess) -> None:
    async with ConsoleClient(server) as client:
        response = await client.login("nobody")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "login_failed"
    assert audit_lines(server, "nobody") == [("login", "login_failed", "127.0.0.1")]


async def test_roles_limit_what_an_operator_reads(
    server: TipmeterProcess, admin: ConsoleClient
) -> None:
    assert (await admin.get("/console/api/audit")).status_code == 200
    operators = (await admin.get("/console/api/operators")).json()["operators"]
    assert {o["operator_id"]: o["role"] for o in operators}["rio"] == "read_only"
    assert all("password_hash" not in o for o in operators)
    for name in ("sam", "rio"):
        client = await logged_in(server, name)
        async with client:
            response = await client.get("/console/api/audit")
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "role_forbidden"


async def test_the_console_page_is_served_with_the_pages_headers(server: TipmeterProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        page = await http.get("/console/")
        assert page.status_code == 200
        assert "operator console" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        chart = await http.get("/console/vendor/chart.umd.js")
        assert chart.status_code == 200
        assert chart.headers["content-type"].startswith("text/javascript")
        assert "Chart" in chart.text[:5_000]
