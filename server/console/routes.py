"""The console's HTTP routes: its page and files, login and logout, and the guard every one of
its API routes goes through (session cookie, role, CSRF token, audit).

Errors are the HTTP API's JSON shape (``{"error": {"code", "message"}}``): ``login_required``
(401: no live session), ``role_forbidden`` (403), ``csrf_failed`` (403), ``login_failed`` (401:
wrong name or password, said the same way for both), ``locked`` (423: too many failures).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, request_response
from starlette.staticfiles import StaticFiles

from metering.keys import is_id
from server.api import ApiError, json_body
from server.console import auth, store
from server.console.auth import Role
from server.demo_api import CLIENTS_DIR, WithPageHeaders
from server.runtime import Runtime, runtime
from settlement.ledger.errors import LedgerUnavailable
from settlement.ledger.times import at

log = logging.getLogger("tipmeter.console")

#: The console's page and its own scripts and styles.
CONSOLE_DIR: Final = CLIENTS_DIR / "pages" / "console"
#: Chart.js's self-contained build, installed by npm (``make install``) and served from here:
#: the console loads nothing from another site.
CHART_JS_FILE: Final = (
    CLIENTS_DIR / "js" / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
)
#: Largest body a console request may send (names, a reason, a few ids).
CONSOLE_BODY_BYTES_MAX: Final = 4_096
#: Lines of the audit log one request reads at most.
AUDIT_LINES_MAX: Final = 500

_ROLES: Final = {role.value: role for role in Role}


@dataclass(frozen=True, slots=True)
class Operator:
    """Who sends a request: a live session's operator."""

    operator_id: str
    role: Role
    session_id: str
    csrf_token: str
    remote_addr: str


ConsoleHandler = Callable[[Request, Runtime, Operator], Awaitable[Response]]


def now(rt: Runtime) -> datetime:
    """The server's time (its clock, which tests may drive)."""
    return at(rt.meter.clock.now_ms())


def remote_addr(conn: HTTPConnection) -> str:
    """Where a request comes from (the peer's address)."""
    return conn.client.host if conn.client else ""


def signer(conn: HTTPConnection, rt: Runtime) -> auth.CookieSigner:
    """The app's cookie signer, made on first use from the server's secrets."""
    state = conn.app.state
    made = getattr(state, "console_signer", None)
    if isinstance(made, auth.CookieSigner):
        return made
    made = auth.CookieSigner(rt.settings.ticket_secrets)
    state.console_signer = made
    return made


async def write_audit(
    rt: Runtime,
    *,
    operator_id: str,
    action: str,
    target: str = "",
    outcome: str,
    detail: dict[str, Any] | None = None,
    remote: str,
) -> None:
    """Append one line to the audit log (in a transaction of its own)."""
    async with rt.ledger.database.connection() as conn, conn.transaction():
        await store.audit(
            conn,
            operator_id=operator_id,
            action=action,
            target=target,
            outcome=outcome,
            detail=detail or {},
            remote_addr=remote,
            at=now(rt),
        )


async def session_of(conn: HTTPConnection, rt: Runtime) -> Operator | None:
    """The operator whose live session the request's cookie names, or None."""
    cookie = conn.cookies.get(auth.COOKIE_NAME)
    if not cookie:
        return None
    session_id = signer(conn, rt).unsign(cookie)
    if session_id is None:
        return None
    async with rt.ledger.database.connection() as db:
        session = await store.live_session(db, session_id, now(rt))
    if session is None or session.role not in _ROLES:
        return None
    return Operator(
        session.operator_id,
        _ROLES[session.role],
        session.session_id,
        session.csrf_token,
        remote_addr(conn),
    )


def guarded(
    name: str, handler: ConsoleHandler, role: Role
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a console API handler: a live session whose role allows ``role``, the CSRF token on
    every request that is not a GET, errors as JSON, metrics by route ``name``."""

    async def serve(request: Request) -> Response:
        rt = runtime(request)
        try:
            operator = await session_of(request, rt)
            if operator is None:
                raise ApiError(401, "login_required", "log in to the console first")
            if not operator.role.allows(role):
                await write_audit(
                    rt,
                    operator_id=operator.operator_id,
                    action=name,
                    outcome="role_forbidden",
                    remote=operator.remote_addr,
                )
                raise ApiError(403, "role_forbidden", f"this needs the {role.value} role")
            if request.method not in ("GET", "HEAD"):
                sent = request.headers.get(auth.CSRF_HEADER, "")
                if not auth.same_token(sent, operator.csrf_token):
                    await write_audit(
                        rt,
                        operator_id=operator.operator_id,
                        action=name,
                        outcome="csrf_failed",
                        remote=operator.remote_addr,
                    )
                    raise ApiError(403, "csrf_failed", f"send the session's {auth.CSRF_HEADER}")
            response = await handler(request, rt, operator)
        except ApiError as error:
            response = error.response()
        except LedgerUnavailable:
            response = ApiError(
                503, "ledger_unavailable", "the ledger database is unavailable; retry"
            ).response()
        response.headers["cache-control"] = "no-store"
        rt.metrics.http_requests.labels(f"console_{name}", str(response.status_code)).inc()
        return response

    return serve


async def _body(request: Request) -> dict[str, Any]:
    return await json_body(request, CONSOLE_BODY_BYTES_MAX)


def _same_origin(request: Request) -> bool:
    """A login must come from the console's own page: a browser sends Origin with every POST,
    and another site's page has another one."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser (a script holding the password anyway)
    return origin == f"{request.url.scheme}://{request.url.netloc}"


async def login(request: Request) -> Response:
    """``POST /console/api/login`` ``{"operator", "password"}``: a session cookie, and the
    session's CSRF token in the answer."""
    rt = runtime(request)
    remote = remote_addr(request)
    try:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise ApiError(415, "json_required", "send the login as application/json")
        if not _same_origin(request):
            raise ApiError(403, "csrf_failed", "log in from the console's own page")
        body = await _body(request)
        name, password = body.get("operator"), body.get("password")
        if not (is_id(name) and isinstance(password, str) and len(password) > 0):
            raise ApiError(400, "invalid_field", "send operator and password")
        if len(password) > auth.PASSWORD_CHARS_MAX:
            raise ApiError(400, "invalid_field", "that password is too long")
        return await _login(request, rt, str(name), password, remote)
    except ApiError as error:
        return error.response()
    except LedgerUnavailable:
        return ApiError(503, "ledger_unavailable", "the database is unavailable; retry").response()


async def _login(request: Request, rt: Runtime, name: str, password: str, remote: str) -> Response:
    when = now(rt)
    async with rt.ledger.database.connection() as db, db.transaction():
        operator = await store.operator_for_login(db, name)
        if operator is not None and auth.locked(operator.locked_until, when):
            outcome, error = (
                "locked",
                ApiError(
                    423, "locked", "too many failed logins: this account is locked for a while"
                ),
            )
        else:
            good = await asyncio.to_thread(
                auth.verify_password, operator.password_hash if operator else None, password
            )
            if operator is None or not good or operator.disabled:
                outcome = "login_failed"
                error = ApiError(401, "login_failed", "wrong operator name or password")
                if operator is not None:
                    failed_n, locked_until = auth.after_failure(operator.failed_n, when)
                    await store.record_failure(db, name, failed_n, locked_until)
                    if locked_until is not None:
                        outcome = "login_failed_locked"
            else:
                session_id, csrf = auth.new_token(), auth.new_token()
                await store.record_success(db, name, when)
                if auth.needs_rehash(operator.password_hash):
                    await store.set_password(
                        db, name, await asyncio.to_thread(auth.hash_password, password)
                    )
                await store.create_session(
                    db,
                    session_id,
                    name,
                    csrf,
                    remote,
                    when,
                    when + timedelta(seconds=auth.SESSION_TTL_S),
                )
                await store.audit(
                    db,
                    operator_id=name,
                    action="login",
                    target="",
                    outcome="ok",
                    detail={},
                    remote_addr=remote,
                    at=when,
                )
                response = JSONResponse(
                    {"operator": name, "role": operator.role, "csrf_token": csrf},
                    headers={"cache-control": "no-store"},
                )
                response.set_cookie(
                    auth.COOKIE_NAME,
                    signer(request, rt).sign(session_id),
                    max_age=auth.SESSION_TTL_S,
                    path=auth.COOKIE_PATH,
                    httponly=True,
                    samesite="strict",
                    secure=request.url.scheme == "https",
                )
                return response
        await store.audit(
            db,
            operator_id=name,
            action="login",
            target="",
            outcome=outcome,
            detail={},
            remote_addr=remote,
            at=when,
        )
    return error.response()


async def logout(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``POST /console/api/logout``: the session ends; the cookie is dropped."""
    async with rt.ledger.database.connection() as db, db.transaction():
        await store.end_session(db, operator.session_id, now(rt))
        await store.audit(
            db,
            operator_id=operator.operator_id,
            action="logout",
            target="",
            outcome="ok",
            detail={},
            remote_addr=operator.remote_addr,
            at=now(rt),
        )
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(auth.COOKIE_NAME, path=auth.COOKIE_PATH)
    return response


async def me(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``GET /console/api/me``: who is logged in, the role, and the CSRF token to send."""
    return JSONResponse(
        {
            "operator": operator.operator_id,
            "role": operator.role.value,
            "csrf_token": operator.csrf_token,
        }
    )


async def session(request: Request) -> Response:
    """``GET /console/api/session``: like ``/me``, but 200 ``{"operator": null}`` without a live
    session — what the page asks first (a 401 would be logged by the browser as an error)."""
    rt = runtime(request)
    operator = await session_of(request, rt)
    if operator is None:
        return JSONResponse({"operator": None}, headers={"cache-control": "no-store"})
    return await me(request, rt, operator)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


async def audit_log(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``GET /console/api/audit?limit=N`` (admin): the newest lines of the audit log."""
    raw = request.query_params.get("limit", "100")
    limit = int(raw) if raw.isdigit() else 100
    async with rt.ledger.database.connection() as db:
        rows = await store.audit_log(db, max(1, min(limit, AUDIT_LINES_MAX)))
    return JSONResponse({"lines": [_jsonable(row) for row in rows]})


async def operators(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``GET /console/api/operators`` (admin): every operator account."""
    async with rt.ledger.database.connection() as db:
        rows = await store.operators(db)
    return JSONResponse({"operators": [_jsonable(row) for row in rows]})


async def _page(request: Request) -> Response:
    return FileResponse(CONSOLE_DIR / "index.html", headers={"cache-control": "no-store"})


async def _to_page(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


async def _chart_js(request: Request) -> Response:
    if not CHART_JS_FILE.exists():
        return ApiError(
            404, "not_installed", "Chart.js is missing: run `make install` (npm ci)"
        ).response()
    return FileResponse(CHART_JS_FILE, media_type="text/javascript")


def routes(extra: list[BaseRoute] | None = None) -> list[BaseRoute]:
    """The console's page, files and API (``extra``: the routes of the other console modules,
    already guarded)."""
    return [
        Route("/console", _to_page, methods=["GET"]),
        Route("/console/", WithPageHeaders(request_response(_page)), methods=["GET"]),
        Route(
            "/console/vendor/chart.umd.js",
            WithPageHeaders(request_response(_chart_js)),
            methods=["GET"],
        ),
        Mount(
            "/console/static",
            WithPageHeaders(StaticFiles(directory=Path(CONSOLE_DIR), check_dir=False)),
        ),
        Route("/console/api/login", login, methods=["POST"]),
        Route("/console/api/logout", guarded("logout", logout, Role.READ_ONLY), methods=["POST"]),
        Route("/console/api/me", guarded("me", me, Role.READ_ONLY), methods=["GET"]),
        Route("/console/api/session", session, methods=["GET"]),
        Route("/console/api/audit", guarded("audit", audit_log, Role.ADMIN), methods=["GET"]),
        Route(
            "/console/api/operators", guarded("operators", operators, Role.ADMIN), methods=["GET"]
        ),
        *(extra or []),
    ]
