"""Every route of the console, for ``server.app``: one registration point."""

from __future__ import annotations

from starlette.routing import BaseRoute

from server.console import routes


def console_routes() -> list[BaseRoute]:
    """The console's page, files and API."""
    return routes.routes([])
