"""Database configuration shared by every service: the seed's pool settings as overridable defaults, and the
session-per-request config the HTTP apps use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from advanced_alchemy.config import AlembicAsyncConfig, AsyncSessionConfig, SQLAlchemyAsyncConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig as LitestarAlchemyConfig
from advanced_alchemy.extensions.litestar._utils import delete_aa_scope_state, get_aa_scope_state
from advanced_alchemy.extensions.litestar.plugins.init.config.common import SESSION_TERMINUS_ASGI_EVENTS
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.util import await_only

from apps.common.pool_metrics import instrument_pool
from apps.common.settings import DAY_S, Settings, env
from apps.common.topology import ServiceSpec, database_url

if TYPE_CHECKING:
    from litestar.datastructures import State
    from litestar.types import Message, Scope

APPS = Path(__file__).resolve().parent.parent
log = logging.getLogger("apps.db")
# PostgreSQL's MAX_BACKENDS (2**18 - 1): the ceiling of max_connections, so no pool means more connections.
MAX_BACKENDS = 262_143


@dataclass(frozen=True)
class PoolSettings(Settings):
    """The seed's Go pool settings (25 open, 5 idle, 5 min lifetime, 1 min idle time) on SQLAlchemy's QueuePool.

    At most 25 open connections, as the seed says, all of them pool_size (25 + 0 overflow). QueuePool closes an
    overflow connection the moment it is returned, so any overflow churns connections under load: with
    5 + 20, every request beyond the fifth concurrent one opened and closed a PostgreSQL connection (GET /ready
    807 req/s with 5+20, 2,042 with 20+5); with 20 + 5, `just bench`'s 32 connections still opened 34-58 new
    order_db sessions per 20 s at the maximum, each a fork, a SCRAM handshake and a cold backend that plans
    the placement's prepared statement anew (25 + 0: 1, CPU per order lower in three of three pairs; docs/
    benchmarks.md, session 27). Go's pool keeps busy connections open and only trims idle ones; so does this:
    ConnMaxIdleTime 1 min is enforced at both ends (``expire_idle_connections``): a checkout replaces a
    connection that sat idle for a minute, and PostgreSQL's ``idle_session_timeout`` at twice that closes
    the sessions of a pool nobody checks out from. ConnMaxLifetime 5 min = pool_recycle.

    The limits are per service, not per process: a service with several uvicorn workers splits them
    (``per_worker``), so a service's workers (``<NAME>_WORKERS``) open at most 25 between them, as the seed says.
    """

    size: int = env("DB_POOL_SIZE", 25, minimum=1, maximum=MAX_BACKENDS)
    max_overflow: int = env("DB_POOL_MAX_OVERFLOW", 0, minimum=0, maximum=MAX_BACKENDS)
    recycle_s: int = env("DB_POOL_RECYCLE_S", 300, minimum=1, maximum=DAY_S)
    timeout_s: float = env("DB_POOL_TIMEOUT_S", 10.0, above=0, maximum=DAY_S)
    idle_timeout_s: float = env("DB_POOL_IDLE_TIMEOUT_S", 60.0, above=0, maximum=DAY_S)

    def per_worker(self, workers: int) -> PoolSettings:
        """This service's limits split between ``workers`` processes (never more in total)."""
        if workers <= 1:
            return self
        size = max(1, self.size // workers)
        total = max(size, (self.size + self.max_overflow) // workers)
        return PoolSettings(size, total - size, self.recycle_s, self.timeout_s, self.idle_timeout_s)


def alchemy_config(spec: ServiceSpec, pool: PoolSettings | None = None) -> SQLAlchemyAsyncConfig:
    """advanced-alchemy config for one service: its own engine, metadata (bind key) and migrations."""
    pool = pool or PoolSettings.from_env().per_worker(spec.worker_count())
    engine = create_async_engine(
        database_url(spec),
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_recycle=pool.recycle_s,
        pool_timeout=pool.timeout_s,
        connect_args={"server_settings": {"idle_session_timeout": str(server_idle_timeout_ms(pool))}},
    )
    expire_idle_connections(engine, pool.idle_timeout_s)
    replace_closed_connections(engine)
    instrument_pool(engine, spec.name)  # commerce_db_pool_* on /metrics (apps/common/pool_metrics.py)
    return SQLAlchemyAsyncConfig(
        engine_instance=engine,
        bind_key=spec.name,
        # Write paths commit explicitly; nothing commits behind the handler's back.
        session_config=AsyncSessionConfig(expire_on_commit=False, autoflush=False),
        alembic_config=AlembicAsyncConfig(
            script_location=str(APPS / spec.name / "migrations"),
            version_table_name="alembic_version",
        ),
        create_all=False,
    )


def server_idle_timeout_ms(pool: PoolSettings) -> int:
    """PostgreSQL's ``idle_session_timeout``: twice the pool's own, a backstop that never races a checkout."""
    return round(pool.idle_timeout_s * 2 * 1000)


def expire_idle_connections(engine: AsyncEngine, idle_timeout_s: float) -> None:
    """A checkout replaces a pooled connection idle for ``idle_timeout_s`` or longer (Go's ConnMaxIdleTime).

    The client decides, not the server: when PostgreSQL's ``idle_session_timeout`` alone expired them, a
    checkout at the very moment the server gave up sent its query down a socket being closed, and the
    request failed ("terminating connection due to idle-session timeout", or asyncpg's "cannot switch
    to state 15"): a 503 in CI, 10 of 40 checkouts at the edge in a loop. The server's timeout is twice
    this one, so a connection the client still trusts is never one the server is closing.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def mark_idle(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def discard_expired(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since >= idle_timeout_s:
            # Only this connection: SQLAlchemy closes it and opens a fresh one for this checkout.
            raise exc.DisconnectionError("idle for longer than the pool's idle timeout")


def replace_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection the server closed is replaced at checkout, without a round trip.

    After a PostgreSQL restart every pooled connection is dead; without a check each one failed its next
    request with a 503. SQLAlchemy's ``pool_pre_ping`` found them with a ping, which on asyncpg is three
    round trips (BEGIN, ``;``, ROLLBACK) on every checkout: 3 of an order's 8. A server that closes a
    connection (a restart, ``idle_session_timeout``, a terminated backend) sends its FATAL notice and
    closes the socket, which asyncpg sees as soon as the event loop reads it; one turn of the loop, then
    ``is_closed()``. Like the ping's failure, a closed one invalidates the whole pool: after a restart
    its other connections are dead too.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def mark_fresh(dbapi_connection: Any, record: Any) -> None:
        record.info[_FRESH] = True

    @event.listens_for(engine.sync_engine, "checkout")
    def discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # A connection made for this checkout is not checked (as pool_pre_ping skips a fresh one): the pool
        # retries a checkout only twice, and a server shutting down just after the replacement connected
        # would fail that second check too, which SQLAlchemy reports as InvalidRequestError("This
        # connection is closed"), a 500. Its first statement meets the closed socket instead: a 503.
        if record.info.pop(_FRESH, False):
            return
        driver = dbapi_connection.driver_connection
        if not driver.is_closed() and unread_input(driver):
            await_only(asyncio.sleep(0))  # let the loop read what waits on the socket: a close, most likely
        if driver.is_closed():
            raise exc.InvalidatePoolError("the server closed this pooled connection")


def unread_input(driver: Any) -> bool:
    """Whether the server sent this idle connection something the event loop has not read yet (its close,
    or, rarely, an asynchronous message); True when it cannot tell.

    One ``select`` with no wait instead of a turn of the event loop on every checkout: that turn (the order
    placement's own checkout, three times an order's other awaits deep) cost ~15-40 us of CPU per checkout
    and, with nothing to read, could not change ``is_closed()``."""
    transport = getattr(driver, "_transport", None)  # asyncpg's; no public accessor
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):  # closed under us, or no longer a descriptor
        return True
    return bool(readable)


async def use_autocommit(session: AsyncSession) -> None:
    """Each statement of this session commits on its own: no BEGIN or COMMIT round trips, for a path whose
    one write is a single statement (the order's placement). Call before the session's first statement;
    the pool restores the isolation level when the connection goes back."""
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    session.info[_AUTOCOMMIT] = True


def in_autocommit(session: AsyncSession) -> bool:
    """Whether ``use_autocommit`` was called on this session (a dict lookup: asking the connection costs
    ~23 us of CPU through SQLAlchemy's greenlet)."""
    return bool(session.info.get(_AUTOCOMMIT))


_AUTOCOMMIT = "apps.db.autocommit"
_FRESH = "apps.db.fresh"


def litestar_alchemy_config(spec: ServiceSpec) -> LitestarAlchemyConfig:
    """The service's ``alchemy_config`` as advanced-alchemy's Litestar config (session per request).

    The default before-send handler only closes the session; there is deliberately no autocommit handler,
    which would log a failed commit and still send the 2xx.
    """
    base = alchemy_config(spec)
    shared = {f.name: getattr(base, f.name) for f in fields(base) if f.init}
    config = LitestarAlchemyConfig(**shared, set_default_exception_handler=False)
    config.before_send_handler = session_closer(config.session_scope_key)
    return config


def session_closer(session_scope_key: str) -> Callable[[Message, Scope], Awaitable[None]]:
    """The before-send hook that closes the request's session as its answer starts, and never raises.

    It runs as the response starts, so an error here would turn an answer already decided (a 503 while
    PostgreSQL restarts) into the server's 500: closing rolls back on a connection that may be dead. A
    failed close is logged and the session's connections invalidated, so the pool never reuses them.
    """

    async def close_session(message: Message, scope: Scope) -> None:
        session = cast("AsyncSession | None", get_aa_scope_state(scope, session_scope_key))
        if session is None or message["type"] not in SESSION_TERMINUS_ASGI_EVENTS:
            return
        delete_aa_scope_state(scope, session_scope_key)
        if never_used(session):
            return
        try:
            await session.close()
        except Exception as exc:  # whatever the close hits, the client's answer stands
            log.warning("session close failed; connection discarded", extra={"error": type(exc).__name__})
            with contextlib.suppress(Exception):
                await session.invalidate()

    return close_session


SESSION_CONFIG: Final = "apps.db.session_config"


class LazySession:
    """A request's session made on its first use, for a handler that usually needs none (POST /api/orders
    sends its statements on a pooled connection of its own, apps/order/driver.py).

    ``bind`` (the engine) and ``info`` answer without a session; anything else makes the request's session
    as the plugin's ``db_session`` dependency makes it (``provide_session``: kept in the scope, closed by
    ``session_closer`` once the answer starts), moves ``info``'s entries into it and answers from it. Not
    making one saved ~60 us of CPU per order (resolving ``db_session``, building the ``AsyncSession``,
    looking at it again before the answer; docs/benchmarks.md, session 27).
    """

    __slots__ = ("_info", "_make", "_session", "bind")

    def __init__(self, bind: AsyncEngine, make: Callable[[], AsyncSession]) -> None:
        self.bind = bind
        self._make = make
        self._info: dict[Any, Any] = {}
        self._session: AsyncSession | None = None

    @property
    def info(self) -> dict[Any, Any]:
        return self._info if self._session is None else self._session.info

    @property
    def made(self) -> bool:
        """Whether the request's session exists (something used it)."""
        return self._session is not None

    def __getattr__(self, name: str) -> Any:
        if self._session is None:
            self._session = self._make()
            self._session.info.update(self._info)
        return getattr(self._session, name)


def lazy_session(state: State, scope: Scope) -> AsyncSession:
    """This request's session, made on first use (``LazySession``; ``SESSION_CONFIG`` in the app's state
    names the plugin's config, ``apps/common/http.py``): typed as the session it stands for."""
    config: LitestarAlchemyConfig = state[SESSION_CONFIG]
    return cast("AsyncSession", LazySession(config.get_engine(), partial(config.provide_session, state, scope)))


def never_used(session: AsyncSession) -> bool:
    """Whether closing ``session`` would do nothing: it never began a transaction (so it holds no connection)
    and holds no object. Its close is then skipped: SQLAlchemy's greenlet hop alone cost ~60 us of CPU per
    request for a session the handler never used (POST /api/orders sends its statements on a pooled
    connection of its own, apps/order/driver.py)."""
    sync = session.sync_session
    return not sync.in_transaction() and not sync.identity_map and not sync.new and not sync.deleted
