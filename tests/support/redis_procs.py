"""Real redis-server processes for tests: one standalone node, and a local six-node cluster."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import redis

from server.embedded_redis import RedisServer, free_port
from tests.support.waiting import eventually_sync

CLUSTER_SLOTS: Final = 16384
#: A cluster node also listens on its port + 10000 (the cluster bus), so ports stay below this.
CLUSTER_PORT_MAX: Final = 55_535


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port(rng: random.Random = random.Random()) -> int:  # noqa: B008 - one shared rng
    """A port whose cluster bus port (port + 10000) is free as well."""
    while True:
        port = rng.randrange(20_000, CLUSTER_PORT_MAX)
        if _bindable(port) and _bindable(port + 10_000):
            return port


def _command(client: redis.Redis, *args: Any) -> Any:
    """Send a raw command (CLUSTER subcommands have no typed helpers that fit every version)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def start_standalone(base: Path) -> RedisServer:
    """Start a standalone redis-server on a free loopback port, without persistence."""
    port = free_port()
    server = RedisServer(base / f"redis-{port}", port=port, persistent=False)
    server.start()
    return server


class LocalCluster:
    """Three primaries and three replicas on loopback, joined into one Redis Cluster."""

    def __init__(self, base: Path, primaries: int = 3, replicas_per_primary: int = 1) -> None:
        self.base = base
        self.primaries = primaries
        self.replicas_per_primary = replicas_per_primary
        self.nodes: list[RedisServer] = []

    @property
    def startup_nodes(self) -> tuple[str, ...]:
        """``host:port`` of every node."""
        return tuple(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, timeout_s: float = 30) -> None:
        """Start the nodes, assign slots, meet, attach replicas; return at ``cluster_state:ok``
        with every replica in sync with its primary."""
        count = self.primaries * (1 + self.replicas_per_primary)
        try:
            for _ in range(count):
                port = free_cluster_port()
                node = RedisServer(
                    self.base / f"node-{port}", port=port, persistent=False, cluster=True
                )
                node.start()
                self.nodes.append(node)
            clients = [redis.Redis(port=node.tcp_port) for node in self.nodes]
            per = CLUSTER_SLOTS // self.primaries
            for index in range(self.primaries):
                first = index * per
                last = CLUSTER_SLOTS - 1 if index == self.primaries - 1 else first + per - 1
                _command(clients[index], "CLUSTER", "ADDSLOTSRANGE", first, last)
            for node in self.nodes[1:]:
                _command(clients[0], "CLUSTER", "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + timeout_s

            def wait(condition: Callable[[], bool], what: str) -> None:
                left_s = max(0.0, deadline - time.monotonic())
                eventually_sync(condition, timeout_s=left_s, interval_s=0.05, what=what)

            wait(
                lambda: all(
                    len(_command(c, "CLUSTER", "NODES").splitlines()) >= count for c in clients
                ),
                "the cluster's nodes meet",
            )
            ids = [_command(c, "CLUSTER", "MYID").decode() for c in clients]
            for c in clients[: self.primaries]:
                # Send a replica its first copy at once, not after the 5 s wait for more
                # replicas (a test may kill a primary soon after the start).
                _command(c, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
            for index in range(self.primaries, count):
                primary = (index - self.primaries) % self.primaries
                _command(clients[index], "CLUSTER", "REPLICATE", ids[primary])
            wait(
                lambda: all(b"cluster_state:ok" in _command(c, "CLUSTER", "INFO") for c in clients),
                "the cluster reaches cluster_state:ok",
            )
            # A replica that has not finished its first copy refuses to take over (its data
            # is older than cluster-replica-validity-factor allows): a primary killed then
            # stays failed for good. Return once every replica holds its copy.
            wait(
                lambda: all(
                    _command(c, "INFO", "replication").get("master_link_status") == "up"
                    for c in clients[self.primaries :]
                ),
                "the replicas finish their first copy",
            )
            for c in clients:
                c.close()
        except BaseException:
            self.stop()
            raise

    def replica_of(self, primary: int) -> RedisServer:
        """The (first) replica that :meth:`start` attached to primary number ``primary``."""
        return self.nodes[self.primaries + primary]

    def config_set(self, name: str, value: str, nodes: Sequence[RedisServer] = ()) -> None:
        """``CONFIG SET name value`` on ``nodes`` (every node when none are named)."""
        for node in nodes or self.nodes:
            with redis.Redis(port=node.tcp_port) as client:
                _command(client, "CONFIG", "SET", name, value)

    def flush(self) -> None:
        """Empty every primary (replicas follow)."""
        for node in self.nodes[: self.primaries]:
            with redis.Redis(port=node.tcp_port) as client:
                client.flushall()

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()
        self.nodes.clear()
