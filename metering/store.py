"""The Redis connection (one node or a cluster) and the runner of the Lua scripts.

Theory of operation. Each Lua file is registered once per client with redis-py's script
registration (:meth:`redis.asyncio.Redis.register_script`), which sends ``EVALSHA`` and loads
the script on ``NOSCRIPT``. Single calls go through that object. Batched scripts (tips, relays,
billing ticks) take many *items*, each with its own keys that share one hash tag; the runner
puts as many items as fit in one call — all of them on a single node, only those of one slot on
a cluster — and sends every call of a batch in one pipeline. redis-py's pipeline would ask
``SCRIPT EXISTS`` before every execution when handed script objects, so the pipeline sends raw
``EVALSHA`` and reloads only when a reply says ``NOSCRIPT`` (a restarted or failed-over node);
an ``EVALSHA`` that answered ``NOSCRIPT`` never ran, so sending it again is safe.

Errors from Redis become :class:`~metering.errors.StoreUnavailable` (could not reach it; the
operation may or may not have applied) or :class:`~metering.errors.StoreError`.

Replicated acknowledgement (opt-in, :class:`Replication`). A batched script marked
``replicated`` is followed, on the same connection and in the same round trip, by
``WAIT <replicas> <timeout>``: Redis answers once that many replicas hold every write the
connection made. Fewer in time means the items are applied on the primary but could be lost with
it, so the whole call answers :class:`~metering.errors.StoreUnavailable` and the callers refuse
with a retryable code; a retry is answered from the primary's record (``duplicate``) once it is
reachable. On a cluster the ``WAIT`` is routed to the node that ran the calls; if the slot moved
meanwhile (a redirect ran the call elsewhere), the call is answered unavailable as well.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from hiredis import pack_command
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from metering.errors import InvalidArgument, StoreError, StoreUnavailable

LUA_DIR: Final = Path(__file__).parent / "lua"

#: Items one script call carries at most; more are split into several calls of one pipeline.
#: Bounds the time one call holds Redis (about 10 µs an item) and the size of its reply.
ITEMS_PER_CALL_MAX: Final = 256

Arg: TypeAlias = str | int | bytes
Client: TypeAlias = aioredis.Redis | RedisCluster
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One Lua file (with the shared prelude prepended) and its SHA1."""

    name: str
    source: str

    @property
    def sha(self) -> str:
        """The SHA1 Redis knows the script by."""
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    @classmethod
    def load(
        cls, name: str, directory: Path = LUA_DIR, preludes: tuple[str, ...] = ("_prelude",)
    ) -> LuaScript:
        """Read ``<directory>/<name>.lua`` (``metering/lua`` by default) after the preludes
        (``metering/lua/<prelude>.lua``); ``_prelude`` is shared by every script."""
        parts = [(LUA_DIR / f"{prelude}.lua").read_text() for prelude in preludes]
        parts.append((directory / f"{name}.lua").read_text())
        return cls(name=name, source="\n".join(parts))


@dataclass(frozen=True, slots=True)
class BatchedScript(Generic[ItemT, ResultT]):
    """A script that applies any number of items, each with its own keys and arguments.

    ``item_keys`` and ``item_args`` must return exactly ``keys_per_item`` and ``args_per_item``
    values; every key of one item must share one hash tag. ``decode`` turns one item's reply
    into its typed result.
    """

    script: LuaScript
    keys_per_item: int
    args_per_item: int
    item_keys: Callable[[ItemT], Sequence[str]]
    item_args: Callable[[ItemT], Sequence[Arg]]
    decode: Callable[[ItemT, Any], ResultT]
    #: Whether an answer must wait for replicas (see :class:`Replication`) before it is given.
    replicated: bool = False


#: How long a replicated acknowledgement waits for replicas by default.
ACK_WAIT_MS_DEFAULT: Final = 100


@dataclass(frozen=True, slots=True)
class Replication:
    """Acknowledge ``replicated`` scripts only once ``replicas`` replicas confirmed their writes
    within ``wait_ms`` (Redis ``WAIT``). ``replicas == 0`` turns it off."""

    replicas: int = 0
    wait_ms: int = ACK_WAIT_MS_DEFAULT

    def __post_init__(self) -> None:
        if not 0 <= self.replicas <= 16 or not 1 <= self.wait_ms <= 10_000:
            raise InvalidArgument("replicas must be 0..16 and wait_ms 1..10000")


class Store:
    """A Redis client (single node or cluster) with the product's scripts registered."""

    def __init__(
        self, client: Client, scripts: Sequence[LuaScript], replication: Replication | None = None
    ) -> None:
        self.client: Client = client
        self.is_cluster = isinstance(client, RedisCluster)
        self.replication = replication if replication is not None else Replication()
        self._scripts: dict[str, tuple[LuaScript, AsyncScript]] = {
            s.name: (s, client.register_script(s.source)) for s in scripts
        }

    async def load_scripts(self) -> None:
        """Load every registered script (on every primary of a cluster)."""
        try:
            for script, _ in self._scripts.values():
                await self.client.script_load(script.source)
        except (redis_errors.RedisError, AttributeError) as exc:
            raise _translate(exc) from exc

    async def scripts_loaded(self) -> bool:
        """Tell whether Redis (every primary, on a cluster) holds every registered script."""
        shas = [script.sha for script, _ in self._scripts.values()]
        try:
            found = await self.client.script_exists(*shas)
        except (redis_errors.RedisError, AttributeError) as exc:
            raise _translate(exc) from exc
        return all(found)

    async def ping(self) -> bool:
        """Tell whether Redis answers (every node, on a cluster)."""
        try:
            return bool(await self.client.ping())
        except (redis_errors.RedisError, AttributeError) as exc:
            raise _translate(exc) from exc

    async def call(self, script: LuaScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run one script once and return its raw reply."""
        _, registered = self._scripts[script.name]
        try:
            return await registered(keys=list(keys), args=list(args))
        except (redis_errors.RedisError, AttributeError) as exc:
            raise _translate(exc) from exc

    async def call_batched(
        self,
        batched: BatchedScript[ItemT, ResultT],
        fixed_args: Sequence[Arg],
        items: Sequence[ItemT],
    ) -> list[ResultT]:
        """Apply ``items`` with ``batched`` in as few calls and round trips as the topology allows.

        Returns one result per item, in the order of ``items``.
        """
        if not items:
            return []
        groups = self._group(batched, items)
        calls: list[tuple[list[str], list[Arg]]] = []
        for group in groups:
            keys: list[str] = []
            args: list[Arg] = list(fixed_args)
            for index in group:
                keys.extend(batched.item_keys(items[index]))
                args.extend(batched.item_args(items[index]))
            calls.append((keys, args))
        wait = self.replication if batched.replicated and self.replication.replicas else None
        replies = await self._evalsha_many(batched.script, calls, wait)
        results: dict[int, ResultT] = {}
        for group, reply in zip(groups, replies, strict=True):
            if not isinstance(reply, list) or len(reply) != len(group):
                raise StoreError(f"{batched.script.name} answered {reply!r} for {len(group)} items")
            for index, item_reply in zip(group, reply, strict=True):
                results[index] = batched.decode(items[index], item_reply)
        return [results[index] for index in range(len(items))]

    def _group(self, batched: BatchedScript[ItemT, Any], items: Sequence[ItemT]) -> list[list[int]]:
        """Split item indexes into calls: by slot on a cluster, then by ITEMS_PER_CALL_MAX."""
        if self.is_cluster:
            by_slot: dict[int, list[int]] = defaultdict(list)
            for index, item in enumerate(items):
                by_slot[key_slot(batched.item_keys(item)[0].encode())].append(index)
            buckets = list(by_slot.values())
        else:
            buckets = [list(range(len(items)))]
        return [
            bucket[start : start + ITEMS_PER_CALL_MAX]
            for bucket in buckets
            for start in range(0, len(bucket), ITEMS_PER_CALL_MAX)
        ]

    async def _evalsha_many(
        self,
        script: LuaScript,
        calls: Sequence[tuple[Sequence[str], Sequence[Arg]]],
        wait: Replication | None = None,
    ) -> list[Any]:
        """Send every call in one pipeline; reload and resend the calls that met NOSCRIPT.
        With ``wait``, each connection used ends its round trip with ``WAIT``."""
        if not self.is_cluster:
            return await self._evalsha_packed(script, calls, wait)
        if len(calls) == 1 and wait is None:
            keys, args = calls[0]
            return [await self.call(script, keys, args)]
        client = self.client
        assert isinstance(client, RedisCluster)

        async def send(batch: Sequence[tuple[Sequence[str], Sequence[Arg]]]) -> list[Any]:
            nodes: dict[str, ClusterNode] = {}
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for keys, args in batch:
                        # The raw command: redis-py's cluster pipeline refuses its evalsha() helper,
                        # but routes EVALSHA by its first key like any keyed command.
                        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                        if wait is not None:
                            node = client.get_node_from_key(keys[0])
                            if node is not None:
                                nodes[node.name] = node
                    # The pipeline sends one node's commands on one connection, in order, so
                    # each WAIT follows that node's EVALSHAs on their connection.
                    for node in nodes.values():
                        pipe.execute_command("WAIT", wait.replicas, wait.wait_ms, target_nodes=node)  # type: ignore[union-attr]
                    answers: list[Any] = await pipe.execute(raise_on_error=False)
            except (redis_errors.RedisError, AttributeError) as exc:
                raise _translate(exc) from exc
            if wait is None:
                return answers
            _check_replicated(wait, answers[len(batch) :])
            for keys, _ in batch:
                node = client.get_node_from_key(keys[0])
                if node is None or node.name not in nodes:
                    raise StoreUnavailable("the slot moved while its write was being replicated")
            return answers[: len(batch)]

        return await self._reloading(calls, send)

    async def _reloading(
        self,
        calls: Sequence[tuple[Sequence[str], Sequence[Arg]]],
        send: Callable[[Sequence[tuple[Sequence[str], Sequence[Arg]]]], Awaitable[list[Any]]],
    ) -> list[Any]:
        """Send ``calls`` with ``send`` (one answer per call, errors as values); if Redis lost
        the scripts (NOSCRIPT), load them again and resend only the calls that met it, once."""
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(2):
            answers = await send([calls[i] for i in pending])
            missing: list[int] = []
            for index, answer in zip(pending, answers, strict=True):
                if isinstance(answer, redis_errors.NoScriptError) and attempt == 0:
                    missing.append(index)
                elif isinstance(answer, redis_errors.RedisError):
                    raise _translate(answer) from answer
                else:
                    replies[index] = answer
            if not missing:
                break
            await self.load_scripts()
            pending = missing
        return replies

    async def _evalsha_packed(
        self,
        script: LuaScript,
        calls: Sequence[tuple[Sequence[str], Sequence[Arg]]],
        wait: Replication | None = None,
    ) -> list[Any]:
        """The single-node lane: pack every call in C (hiredis) and pipeline them by hand on one
        pooled connection.

        redis-py's asyncio client packs commands in Python, argument by argument; a batch of
        hundreds of tips has thousands of arguments, and that packing was the largest cost of
        the tip path. Replies are read with redis-py's parser, in order; an error reply is read
        as an exception and the connection stays in step.
        """
        client = self.client
        if isinstance(client, RedisCluster):  # pragma: no cover - callers check is_cluster
            raise StoreError("the packed lane is for a single node")
        return await self._reloading(
            calls, lambda batch: self._send_packed(client, script.sha, batch, wait)
        )

    async def _send_packed(
        self,
        client: aioredis.Redis,
        sha: str,
        calls: Sequence[tuple[Sequence[str], Sequence[Arg]]],
        wait: Replication | None = None,
    ) -> list[Any]:
        pool = client.connection_pool
        try:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        except (redis_errors.RedisError, AttributeError) as exc:
            raise _translate(exc) from exc
        try:
            commands = [
                pack_command(cast(Any, ("EVALSHA", sha, len(keys), *keys, *args)))
                for keys, args in calls
            ]
            if wait is not None:
                commands.append(pack_command(cast(Any, ("WAIT", wait.replicas, wait.wait_ms))))
            await conn.send_packed_command(commands)
            answers: list[Any] = []
            for _ in commands:
                try:
                    answers.append(await conn.read_response())
                except redis_errors.ResponseError as error:
                    answers.append(error)
        except (redis_errors.RedisError, AttributeError) as exc:
            await conn.disconnect()
            raise _translate(exc) from exc
        except BaseException:
            # Cancelled mid-exchange: the replies still due would be read by the next user.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        if wait is not None:
            _check_replicated(wait, answers[len(calls) :])
            del answers[len(calls) :]
        return answers

    async def close(self) -> None:
        """Close every connection."""
        await self.client.aclose()


def _check_replicated(wait: Replication, confirmations: Sequence[Any]) -> None:
    """Raise StoreUnavailable unless every ``WAIT`` answered at least ``wait.replicas``."""
    for confirmed in confirmations:
        if isinstance(confirmed, redis_errors.RedisError):
            raise _translate(confirmed)
        if not isinstance(confirmed, int) or confirmed < wait.replicas:
            raise StoreUnavailable(
                f"applied on the primary, but {confirmed} of {wait.replicas} replicas confirmed"
                f" within {wait.wait_ms} ms"
            )


def as_text(value: object) -> str:
    """A string from a Redis reply (bytes are UTF-8); raise StoreError for anything else."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise StoreError(f"expected a string from Redis, got {value!r}")


def as_int(value: object) -> int:
    """An integer from a Redis reply (an integer reply or its decimal text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, bytes | str):
        return int(value)
    raise StoreError(f"expected an integer from Redis, got {value!r}")


def as_bytes(value: object) -> bytes:
    """Bytes from a Redis reply."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise StoreError(f"expected bytes from Redis, got {value!r}")


def stream_entries(reply: object) -> list[tuple[str, dict[str, bytes]]]:
    """Normalise an XRANGE reply: ``[(entry_id, {field: value})]`` with text ids and fields."""
    if reply is None:
        return []
    if not isinstance(reply, list):
        raise StoreError(f"expected a list of stream entries, got {reply!r}")
    entries = []
    for entry_id, fields in reply:
        values = {as_text(k): as_bytes(v) for k, v in (fields or {}).items()}
        entries.append((as_text(entry_id), values))
    return entries


@contextmanager
def translated() -> Iterator[None]:
    """Turn redis-py exceptions raised inside the block into the money core's exceptions."""
    try:
        yield
    except (redis_errors.RedisError, AttributeError) as exc:
        raise _translate(exc) from exc


def _translate(exc: redis_errors.RedisError | AttributeError) -> StoreError:
    if isinstance(exc, AttributeError):
        # redis-py tears a connection down under a command still using it (a cluster client
        # closes a failed node's connections, in use or not): the command then meets
        # ``None.writelines``. The command may or may not have run, like any lost connection.
        if "'NoneType'" not in str(exc):
            raise exc
        return StoreUnavailable(f"Redis connection torn down mid-command: {exc}")
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return StoreUnavailable(f"Redis unavailable: {exc}")
    if isinstance(exc, redis_errors.ClusterError) and "down" in str(exc).lower():
        return StoreUnavailable(f"Redis cluster unavailable: {exc}")
    return StoreError(f"Redis error: {exc}")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is: one URL (``redis://``, ``rediss://``, ``unix://``) or cluster nodes."""

    url: str | None = None
    cluster_nodes: tuple[str, ...] = ()
    connections_max: int = 64
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    replication: Replication = Replication()

    def __post_init__(self) -> None:
        if (self.url is None) == (not self.cluster_nodes):
            raise InvalidArgument("give exactly one of a Redis URL or a list of cluster nodes")


def create_client(target: RedisTarget) -> Client:
    """Create (but do not connect) a redis-py asyncio client for ``target``."""
    if target.url is not None:
        pool = aioredis.BlockingConnectionPool.from_url(
            target.url,
            max_connections=target.connections_max,
            timeout=target.socket_timeout_s,
            socket_timeout=target.socket_timeout_s,
            socket_connect_timeout=target.connect_timeout_s,
        )
        return aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool
    nodes = []
    for node in target.cluster_nodes:
        parts = urlsplit(node if "://" in node else f"redis://{node}")
        if parts.hostname is None or parts.port is None:
            raise InvalidArgument(f"cluster node {node!r} is not host:port")
        nodes.append(ClusterNode(parts.hostname, parts.port))
    return RedisCluster(
        startup_nodes=nodes,
        max_connections=target.connections_max,
        socket_timeout=target.socket_timeout_s,
        socket_connect_timeout=target.connect_timeout_s,
    )
