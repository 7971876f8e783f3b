"""The WebSocket message handlers, one module per concern; :mod:`server.dispatch` routes to them.

Each handler is ``async def handle_<name>(ctx: Context, message: <Message>) -> None`` and
answers its message exactly once through ``ctx`` (:mod:`server.handlers.context`).
"""
