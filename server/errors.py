"""The exception tree of the server (see the package docstring)."""

from __future__ import annotations


class ServerError(Exception):
    """Root of every exception the server package raises."""


class ConfigError(ServerError, ValueError):
    """A ``TIPMETER_*`` environment variable is malformed; the message names it."""


class EmbeddedRedisError(ServerError):
    """The private redis-server of the embedded default could not be started or stopped."""


class EmbeddedPostgresError(ServerError):
    """The private PostgreSQL of the embedded default could not be found, started or stopped."""


class ListenError(ServerError):
    """The server cannot listen on its host and port (in use, not an address of this host)."""
