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
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from prometheus_client import Counter
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from apps.common.redis_protocol import RedisReplies, encode_command, handshake
from apps.common.settings import DAY_S, Settings, env
from apps.common.topology import redis_url

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.datastructures import State

__all__ = ["OwnConnectionScript", "RedisStore", "create_redis_client", "redis_lifespan", "redis_readiness"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisSettings(Settings):
    # A cache read that takes longer than a database read is worse than no cache.
    timeout_s: float = env("REDIS_TIMEOUT_S", 0.25, above=0, maximum=DAY_S)
    cooldown_s: float = env("REDIS_COOLDOWN_S", 1.0, minimum=0, maximum=DAY_S)  # 0: tried again at once
    pool_size: int = env("REDIS_POOL_SIZE", 64, minimum=1, maximum=65535)  # one client address's ports


# Read when the module is imported, as these defaults always were (a bad value: SettingError naming it).
_SETTINGS: Final = RedisSettings.from_env()
TIMEOUT_S: Final = _SETTINGS.timeout_s
COOLDOWN_S: Final = _SETTINGS.cooldown_s
POOL_SIZE: Final = _SETTINGS.pool_size
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
    """A Lua script run on a Redis connection of its own: the rate limit's counts, sent in the background
    (apps/common/rate_limit.py).

    Commands are written straight to the socket and every caller of the worker shares the connection, its
    reply matched by order (``RedisReplies``): no pool, no per-call timeout scope in redis-py, one write per
    call and one read for whatever replies arrived together. redis-py's pooled call (``AsyncScript`` over a
    ``BlockingConnectionPool``) cost ~290 us of CPU per count; redis-py's connection of our own ~140 us;
    this ~90 us (docs/benchmarks.md, session 24). Made from the pool's settings (address or socket path,
    database, credentials, connect timeout); each call waits at most ``timeout_s`` (then a TimeoutError, and
    the connection is dropped: a Redis that stalls is connected afresh). A failure reaches the caller, which
    fails open. A connection Redis closed while idle is replaced at once, and a script Redis forgot is sent
    whole again. One connection carries every call of the worker.
    """

    def __init__(self, pool: ConnectionPool, script: str, timeout_s: float = TIMEOUT_S) -> None:
        self.pool = pool
        self.script = script
        self.timeout_s = timeout_s
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._handshake = handshake(pool)  # a connection this client cannot make is a start-up error
        self._replies: RedisReplies | None = None
        self._connecting: asyncio.Future[RedisReplies] | None = None

    @property
    def _open(self) -> int:
        return 1 if self._replies is not None and self._replies.usable else 0

    async def run(self, keys: Sequence[str], args: Sequence[object]) -> Any:
        """The script's answer (EVALSHA: only its hash travels)."""
        try:
            return await self._call("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or flushed its scripts: send it whole once
            return await self._call("EVAL", self.script, len(keys), *keys, *args)

    async def _call(self, *args: object) -> Any:
        payload = encode_command(args)
        reused = self._open == 1
        replies = await self._connection()
        try:
            return await self._ask(replies, payload)
        except RedisConnectionError:
            if not reused:
                raise
        # A connection the server had closed while idle (Redis restarted, or closed idle clients) that the
        # loop had not noticed yet: once more, on a new connection, as redis-py's liveness check did.
        return await self._ask(await self._connection(), payload)

    async def _ask(self, replies: RedisReplies, payload: bytes) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await replies.send(payload)
        except TimeoutError:
            replies.close()
            raise
        if isinstance(answer, ResponseError):
            raise answer
        return answer

    async def _connection(self) -> RedisReplies:
        """The live connection, or a new one (callers arriving while it connects wait for the same one)."""
        if self._replies is not None and self._replies.usable:
            return self._replies
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, attempt: asyncio.Future[RedisReplies]) -> None:
        """The attempt is over, whoever still waits on it: the next call connects again if it failed."""
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # seen here even when every caller gave up waiting (no "never retrieved")

    async def _connect(self) -> RedisReplies:
        settings = self.pool.connection_kwargs
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(settings.get("socket_connect_timeout") or self.timeout_s):
            if settings.get("path"):
                _, replies = await loop.create_unix_connection(RedisReplies, settings["path"])
            else:
                _, replies = await loop.create_connection(
                    RedisReplies, settings.get("host", "localhost"), settings.get("port", 6379)
                )
            try:
                for command in self._handshake:
                    answer = await replies.send(encode_command(command))
                    if isinstance(answer, ResponseError):
                        raise answer
            except BaseException:
                replies.close()
                raise
        self._replies = replies
        return replies

    async def close(self, _app: object = None) -> None:
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.close()


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
