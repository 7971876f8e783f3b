"""The tipmeter server: a Starlette ASGI app served by uvicorn, and the ``tipmeter`` command.

Modules: :mod:`server.config` (settings from ``TIPMETER_*``), :mod:`server.embedded_redis`
(the private redis-server of the embedded default), :mod:`server.app` (the app and its
lifespan), :mod:`server.health`, :mod:`server.logs`, :mod:`server.cli`.

Exceptions::

    ServerError
    ├── ConfigError            a TIPMETER_* variable is malformed (says which and why)
    └── EmbeddedRedisError     the private redis-server could not be started
"""
