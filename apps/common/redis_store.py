"""A pooled ``redis.asyncio`` client for services that use Redis as a cache or a session store.

Redis is never the source of truth: every command goes through ``RedisStore.run``, which gives up fast
(short socket timeouts, no retries) and answers ``None`` when Redis cannot be reached, so the caller
falls back to PostgreSQL. After a failure the store skips Redis for a short cool-down instead of paying
a timeout on every request; the first command after it tries again, so a Redis that is back is used
again within a second.

Wiring (no I/O at import time; the pool opens lazily on the first command)::

    create_service_app(spec, ..., lifespan=[redis_lifespan], readiness_checks={"redis": redis_readiness})
    store: RedisStore = app.state.redis
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

from prometheus_client import Counter
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from apps.common.topology import redis_url

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.datastructures import State

__all__ = ["OwnConnectionScript", "RedisStore", "create_redis_client", "redis_lifespan", "redis_readiness"]

T = TypeVar("T")

# A cache read that takes longer than a database read is worse than no cache.
TIMEOUT_S: Final = float(os.environ.get("REDIS_TIMEOUT_S", "0.25"))
COOLDOWN_S: Final = float(os.environ.get("REDIS_COOLDOWN_S", "1.0"))
POOL_SIZE: Final = int(os.environ.get("REDIS_POOL_SIZE", "64"))
STATE_KEY: Final = "redis"

log = logging.getLogger("apps.redis")

REDIS_FAILURES = Counter(
    "commerce_redis_failures", "Redis commands that failed or were skipped while Redis was unreachable", ["outcome"]
)


def create_redis_client(url: str | None = None, *, timeout_s: float = TIMEOUT_S, pool_size: int = POOL_SIZE) -> Redis:
    """A client over a bounded pool: at most ``pool_size`` connections, a short wait for a free one."""
    pool = BlockingConnectionPool.from_url(
        url or redis_url(),
        max_connections=pool_size,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


class OwnConnectionScript:
    """A Lua script run on connections of its own (made with a pool's settings), each used by one call at a
    time: the rate limit's count, once per limited request (apps/common/rate_limit.py).

    redis-py's pooled call (``AsyncScript`` over a ``BlockingConnectionPool``) cost ~290 us of CPU per count,
    half of it taking the connection from the pool and giving it back (a condition, a timeout scope, a
    liveness check, metrics hooks); a connection of our own is ~140 us. Made with the pool's settings (the
    same short timeouts); any failure drops the connection (never reused in an unknown state) and reaches
    the caller, which fails open. At most ``limit`` open; past it a request waits for one given back, at
    most ``timeout_s``, as it waited on the pool.
    """

    def __init__(self, pool: ConnectionPool, script: str, limit: int = POOL_SIZE, timeout_s: float = TIMEOUT_S) -> None:
        self.pool = pool
        self.script = script
        self.limit = limit
        self.timeout_s = timeout_s
        self._waiters: collections.deque[asyncio.Future[AbstractConnection | None]] = collections.deque()
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._idle: list[AbstractConnection] = []
        self._open = 0

    async def run(self, keys: Sequence[str], args: Sequence[object]) -> Any:
        """The script's answer (EVALSHA: only its hash travels)."""
        try:
            return await self._call("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or flushed its scripts: send it whole once
            return await self._call("EVAL", self.script, len(keys), *keys, *args)

    async def _call(self, *args: object) -> Any:
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else await self._acquire()
        try:
            return await self._send(connection, args)
        except RedisConnectionError:
            if not reused:
                raise
        # An idle connection the server had closed (Redis restarted, or closed idle clients): the others are
        # as old. The pool's liveness check reconnected silently; so does this, once, on a new connection.
        await self.close()
        return await self._send(await self._acquire(), args)

    async def _send(self, connection: AbstractConnection, args: tuple[object, ...]) -> Any:
        try:
            await connection.send_command(*args)
            answer = await connection.read_response()
        except BaseException:
            await connection.disconnect()
            self._pass_on(None)  # its place goes to a waiter (which opens a new one) or is freed
            raise
        self._pass_on(connection)
        return answer

    async def _acquire(self) -> AbstractConnection:
        """A new connection while fewer than ``limit`` are open, else the next one given back (the pool's
        wait, bounded by its timeout: then a TimeoutError, and the limit fails open)."""
        if self._open < self.limit:
            self._open += 1
            return self._new()
        waiter: asyncio.Future[AbstractConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout_s):
                handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed over as the wait ended: pass it on
                self._pass_on(waiter.result())
            raise
        return handed if handed is not None else self._new()

    def _pass_on(self, connection: AbstractConnection | None) -> None:
        """A connection given back (None: one dropped) goes to the first waiter, else back to the idle list."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is None:
            self._open -= 1
        else:
            self._idle.append(connection)

    def _new(self) -> AbstractConnection:
        return self.pool.connection_class(**self.pool.connection_kwargs)

    async def close(self, _app: object = None) -> None:
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for connection in idle:
            await connection.disconnect()


class RedisStore:
    """Runs commands on Redis and turns its absence into ``None`` (see the module docstring)."""

    def __init__(self, client: Redis, *, cooldown_s: float = COOLDOWN_S) -> None:
        self.client = client
        self.cooldown_s = cooldown_s
        self._skip_until = 0.0
        self.last_error: str | None = None

    @property
    def cooling_down(self) -> bool:
        return time.monotonic() < self._skip_until

    async def run(self, command: Callable[[Redis], Awaitable[T]], what: str) -> T | None:
        """``command(client)``, or ``None`` if Redis failed now or a moment ago."""
        if self.cooling_down:
            REDIS_FAILURES.labels("skipped").inc()
            return None
        try:
            result = await command(self.client)
        except (RedisError, OSError) as exc:
            self._failed(exc, what)
            return None
        if self.last_error is not None:
            log.info("redis is back", extra={"after": self.last_error})
            self.last_error = None
        return result

    def _failed(self, exc: BaseException, what: str) -> None:
        self._skip_until = time.monotonic() + self.cooldown_s
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        REDIS_FAILURES.labels("failed").inc()
        if self.last_error is None:
            # Once per outage: every request fails the same way until Redis is back.
            log.warning("redis unavailable; serving from the database", extra={"command": what, "reason": reason})
        self.last_error = reason

    async def ping(self) -> str | None:
        """None when Redis answers PING in time, else the reason (never raises)."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc, "PING")
            return self.last_error
        self._skip_until = 0.0
        self.last_error = None
        return None

    async def close(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def redis_lifespan(app: Litestar) -> AsyncIterator[None]:
    """``app.state.redis`` for the app's life; closed at shutdown."""
    store = RedisStore(create_redis_client())
    app.state[STATE_KEY] = store
    try:
        yield
    finally:
        await store.close()


async def redis_readiness(state: State) -> str | None:
    """A readiness check: None when Redis answers, else why not."""
    store: RedisStore = state[STATE_KEY]
    return await store.ping()
