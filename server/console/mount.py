"""Every route of the console, for ``server.app``: one registration point."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from server.console import analyses, live, memberships, routes, support
from server.console.auth import Role
from server.console.routes import ConsoleHandler, guarded


def _api(method: str, path: str, role: Role, action: str, handler: ConsoleHandler) -> Route:
    """``method /console/api/<path>``, for operators of ``role`` or above, audited as
    ``action``."""
    return Route(f"/console/api/{path}", guarded(action, handler, role), methods=[method])


def console_routes() -> list[BaseRoute]:
    """The console's page, files and API."""
    read, sup = Role.READ_ONLY, Role.SUPPORT
    return routes.routes(
        [
            _api("GET", "analyses/{name}", read, "analysis", analyses.handle_analysis),
            WebSocketRoute("/console/live", live.live_endpoint),
            _api("GET", "payments/{number}", read, "payment_search", support.find_payment),
            _api("POST", "refunds", sup, "refund", support.refund),
            _api("POST", "collection/cases/{case_id}/links", sup, "pay_link", support.create_link),
            _api("POST", "customers/{customer}/flag/clear", sup, "clear_flag", support.clear_flag),
            _api(
                "GET",
                "customers/{customer}/subscriptions",
                read,
                "membership_search",
                memberships.customer_subscriptions,
            ),
            *(
                _api(
                    "POST",
                    f"subscriptions/{{subscription_id}}/{name}",
                    sup,
                    f"membership_{name}",
                    act,
                )
                for name, act in (
                    ("cancel", memberships.cancel),
                    ("pause", memberships.pause),
                    ("resume", memberships.resume),
                )
            ),
        ]
    )
