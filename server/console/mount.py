"""Every route of the console, for ``server.app``: one registration point."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from server.console import analyses, live, routes
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
        ]
    )
