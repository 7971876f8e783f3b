"""Redis trouble meets clean, retryable refusals: never a bare 500, never a crashed shutdown."""

from __future__ import annotations

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from clients.sdk import handshake_error, with_ticket
from clients.tickets import Role
from server.embedded_redis import RedisServer
from tests.support.processes import TipmeterProcess, ticket

Pair = tuple[TipmeterProcess, TipmeterProcess]


async def test_a_handshake_when_redis_refuses_writes_is_answered_unavailable(
    servers: Pair, redis_server: RedisServer
) -> None:
    """Redis out of memory refuses the ticket's single-use record: the handshake is refused
    with 503 ``unavailable`` in the documented JSON shape (clients retry), not a plain 500."""
    a, _ = servers
    with redis.Redis(port=redis_server.tcp_port) as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        try:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(with_ticket(a.ws_url, ticket(Role.MODEL, "alice"))):
                    pass
        finally:
            admin.config_set("maxmemory", "0")
    error = handshake_error(refused.value)
    assert (error.status, error.code) == (503, "unavailable")
