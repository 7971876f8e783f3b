"""Every route of the console, for ``server.app``: one registration point."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from server.console import analyses, live, memberships, routes, support
from server.console.auth import Role
from server.console.routes import guarded


def console_routes() -> list[BaseRoute]:
    """The console's page, files and API."""
    return routes.routes(
        [
            Route(
                "/console/api/analyses/{name}",
                guarded("analysis", analyses.handle_analysis, Role.READ_ONLY),
                methods=["GET"],
            ),
            WebSocketRoute("/console/live", live.live_endpoint),
            Route(
                "/console/api/payments/{number}",
                guarded("payment_search", support.find_payment, Role.READ_ONLY),
                methods=["GET"],
            ),
            Route(
                "/console/api/refunds",
                guarded("refund", support.refund, Role.SUPPORT),
                methods=["POST"],
            ),
            Route(
                "/console/api/collection/cases/{case_id}/links",
                guarded("pay_link", support.create_link, Role.SUPPORT),
                methods=["POST"],
            ),
            Route(
                "/console/api/customers/{customer}/flag/clear",
                guarded("clear_flag", support.clear_flag, Role.SUPPORT),
                methods=["POST"],
            ),
            Route(
                "/console/api/customers/{customer}/subscriptions",
                guarded("membership_search", memberships.customer_subscriptions, Role.READ_ONLY),
                methods=["GET"],
            ),
            *(
                Route(
                    f"/console/api/subscriptions/{{subscription_id}}/{action}",
                    guarded(f"membership_{action}", handler, Role.SUPPORT),
                    methods=["POST"],
                )
                for action, handler in (
                    ("cancel", memberships.cancel),
                    ("pause", memberships.pause),
                    ("resume", memberships.resume),
                )
            ),
        ]
    )
