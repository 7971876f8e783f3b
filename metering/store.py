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

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from hiredis import pack_command
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from metering.errors import InvalidArgument, PartlyUnavailable, StoreError, StoreUnavailable

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
        try:
            replies = await self._evalsha_many(batched.script, calls, wait)
        except PartlyUnavailable as partly:
            replies = partly.results
        results: dict[int, ResultT | StoreError] = {}
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, StoreError):
                results.update((index, reply) for index in group)
                continue
            if not isinstance(reply, list) or len(reply) != len(group):
                raise StoreError(f"{batched.script.name} answered {reply!r} for {len(group)} items")
            for index, item_reply in zip(group, reply, strict=True):
                results[index] = batched.decode(items[index], item_reply)
        ordered = [results[index] for index in range(len(items))]
        if any(isinstance(result, StoreError) for result in ordered):
            raise PartlyUnavailable(list(ordered))
        return cast(list[ResultT], ordered)

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
        """Send every call in one round trip per node; reload and resend the calls that met
        NOSCRIPT. With ``wait``, each node's round trip ends with ``WAIT``.

        On a cluster, a node that cannot be reached fails only its own calls: the answers of the
        others are kept, and :class:`~metering.errors.PartlyUnavailable` carries both.
        """
        if not self.is_cluster:
            return await self._evalsha_packed(script, calls, wait)
        if len(calls) == 1 and wait is None:
            keys, args = calls[0]
            return [await self.call(script, keys, args)]
        client = self.client
        assert isinstance(client, GatedCluster)
        replies = await self._reloading(
            calls, lambda batch: client.evalsha_per_node(script.sha, batch, wait)
        )
        if any(isinstance(reply, StoreError) for reply in replies):
            raise PartlyUnavailable(replies)
        return replies

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
                else:  # a reply, or the StoreError of a cluster node that failed its calls
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
    except (redis_errors.RedisError, redis_errors.RedisClusterException, AttributeError) as exc:
        raise _translate(exc) from exc


def _translate(
    exc: redis_errors.RedisError | redis_errors.RedisClusterException | AttributeError,
) -> StoreError:
    if isinstance(exc, AttributeError):
        # redis-py tears a connection down under a command still using it (a cluster client
        # closes a failed node's connections, in use or not): the command then meets
        # ``None.writelines``. The command may or may not have run, like any lost connection.
        if "'NoneType'" not in str(exc):
            raise exc
        return StoreUnavailable(f"Redis connection torn down mid-command: {exc}")
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return StoreUnavailable(f"Redis unavailable: {exc}")
    if isinstance(exc, redis_errors.RedisClusterException):
        # No node reachable to read the slot map from, or the slots not all served.
        return StoreUnavailable(f"Redis cluster unavailable: {exc}")
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


#: Connections of each node's pool kept out of the gate (a process's pub/sub listener holds one).
CLUSTER_GATE_RESERVE: Final = 1

_HOLDS_GATE: ContextVar[bool] = ContextVar("tipmeter_holds_cluster_gate", default=False)


class GatedCluster(RedisCluster):
    """redis-py's cluster client with a wait for a connection, as a single node's pool has.

    Each node's pool raises ``MaxConnectionsError`` at once when all its connections are in
    use (a single node's :class:`~redis.asyncio.BlockingConnectionPool` waits instead), so a
    burst — a hundred clients connecting at once after a deploy — was refused ``unavailable``
    while Redis was idle. Every command and pipeline here first takes one of ``gate`` places;
    one command or pipeline uses at most one connection per node, so no node's pool is ever
    asked for more than ``gate``. A command issued while holding a place (a pipeline resending
    a redirected command, a command sent to every node) does not take a second one.
    """

    def __init__(self, *args: Any, gate: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(gate)
        self._parser_ready = False  # COMMAND read once: key positions do not change
        self._refreshing = asyncio.Lock()

    @asynccontextmanager
    async def gated(self) -> AsyncIterator[None]:
        """Hold one place of the gate for the block (or none, if this task holds one)."""
        if _HOLDS_GATE.get():
            yield
            return
        async with self._gate:
            token = _HOLDS_GATE.set(True)
            try:
                yield
            finally:
                _HOLDS_GATE.reset(token)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.gated():
            return await super().execute_command(*args, **kwargs)

    async def evalsha_per_node(
        self,
        sha: str,
        calls: Sequence[tuple[Sequence[str], Sequence[Arg]]],
        wait: Replication | None,
    ) -> list[Any]:
        """Send ``EVALSHA`` calls, each to the primary of its first key's slot: one round trip
        per node on one of its connections, all nodes at once, one place of the gate.

        Returns one answer per call: its reply, a redis-py error reply (NOSCRIPT, a script
        error), or the :class:`~metering.errors.StoreError` that failed its node's round trip.
        redis-py's cluster pipeline is not used here: one unreachable node fails the whole
        pipeline and closes every node's connections, so healthy shards paid for a failed one.
        """
        if self._initialize:
            with translated():
                await self.initialize()
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for index, (keys, _) in enumerate(calls):
            node = self.get_node_from_key(str(keys[0]))
            if node is None:  # pragma: no cover - get_node_from_key raises for an uncovered slot
                raise StoreUnavailable(f"no node serves the slot of {keys[0]!r}")
            by_node.setdefault(node.name, (node, []))[1].append(index)
        answers: list[Any] = [None] * len(calls)

        async def on_node(node: ClusterNode, indexes: list[int]) -> None:
            try:
                replies = await _round_trip(node, [calls[i] for i in indexes], sha, wait)
            except StoreError as exc:
                self.nodes_manager.move_node_to_end_of_cached_nodes(node.name)
                self._initialize = True  # the next round trip or command reads the slot map
                replies = [exc] * len(indexes)
            for index, reply in zip(indexes, replies, strict=True):
                answers[index] = reply

        async with self.gated():
            await asyncio.gather(*(on_node(node, ix) for node, ix in by_node.values()))
        return answers

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> GatedCluster:
        """Connect at first; after a node failed, read only the slot map again.

        redis-py's refresh also reads ``COMMAND`` again from its default node — the first
        primary, which may be the dead one until its replica takes over — and when that fails
        it closes every node's connections, healthy shards' round trips in flight with them,
        and fails the command: every command then failed while one primary was down. Key
        positions do not change, so ``COMMAND`` is read once, at the first connection.
        """
        if not self._parser_ready:
            await super().initialize(additional_startup_nodes_info, last_failed_node_name)
            self._parser_ready = True
            return self
        async with self._refreshing:
            if self._initialize:  # not already refreshed by another waiter
                await self.nodes_manager.initialize(
                    additional_startup_nodes_info=additional_startup_nodes_info,
                    last_failed_node_name=last_failed_node_name,
                )
                self._initialize = False
        return self

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as there
        return _GatedPipeline(self, transaction)  # type: ignore[abstract]


async def _round_trip(
    node: ClusterNode,
    calls: Sequence[tuple[Sequence[str], Sequence[Arg]]],
    sha: str,
    wait: Replication | None,
) -> list[Any]:
    """Pipeline ``calls`` (and ``WAIT``) on one connection of ``node``; error replies are
    answers, and a redirect (the slot moved) is a StoreUnavailable answer. Raise StoreError if
    the node cannot be reached or replicas did not confirm."""
    commands = [
        pack_command(cast(Any, ("EVALSHA", sha, len(keys), *keys, *args))) for keys, args in calls
    ]
    if wait is not None:
        commands.append(pack_command(cast(Any, ("WAIT", wait.replicas, wait.wait_ms))))
    try:
        conn = node.acquire_connection()
    except (redis_errors.RedisError, redis_errors.RedisClusterException, AttributeError) as exc:
        raise _translate(exc) from exc
    answers: list[Any] = []
    try:
        await conn.send_packed_command(commands)
        for _ in commands:
            try:
                answers.append(await conn.read_response())
            except (redis_errors.MovedError, redis_errors.AskError, redis_errors.TryAgainError):
                raise StoreUnavailable(f"{node.name} no longer serves this slot") from None
            except redis_errors.ResponseError as error:
                answers.append(error)
    except (redis_errors.RedisError, AttributeError, OSError) as exc:
        await conn.disconnect()
        raise (
            _translate(exc)
            if not isinstance(exc, OSError)
            else StoreUnavailable(f"{node.name} unreachable: {exc}")
        ) from exc
    except BaseException:
        # A redirect or a cancellation mid-exchange: the replies still due would be read by
        # the connection's next user.
        await conn.disconnect()
        raise
    finally:
        node.release(conn)
    if wait is not None:
        _check_replicated(wait, answers[len(calls) :])
        del answers[len(calls) :]
    return answers


class _GatedPipeline(ClusterPipeline):
    """A cluster pipeline that holds one place of its client's gate while it runs."""

    def __init__(self, client: GatedCluster, transaction: Any | None = None) -> None:
        super().__init__(client, transaction)
        self._gated_client = client

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with self._gated_client.gated():
            return await super().execute(raise_on_error, allow_redirections)


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
    return GatedCluster(
        startup_nodes=nodes,
        gate=max(1, target.connections_max - CLUSTER_GATE_RESERVE),
        max_connections=target.connections_max,
        socket_timeout=target.socket_timeout_s,
        socket_connect_timeout=target.connect_timeout_s,
    )
