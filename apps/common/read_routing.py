"""Reads that the streaming read replica may serve: the routing rule, in one place.

The rule: a request reads from the replica (port 5433, infra/replica.py) only when

1. its handler asked for it, by taking its service from ``replica_reads(Service)`` (reports and listings:
   the analytics endpoints, the product and order lists); every other handler, and every write, uses the
   request's primary session;
2. the replica is up (checked every 2 s; while it is down the primary serves and ``/ready`` says
   "degraded", still 200); and
3. the replica has replayed the primary's WAL up to where the primary stood when the request began
   (waited for up to ``FENCE_WAIT_S``), so a client that wrote and then lists sees its own write, and the
   replica never answers with older data than the primary would have.

Otherwise the primary serves. Each answer says which in ``X-Read-Source: replica|primary``, and
``commerce_read_source_total{service,source}`` counts them. The monitor also exposes the replica's
lag (``commerce_db_replica_*``) and the lag of the service's Debezium slot (``commerce_cdc_slot_lag_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import asyncpg
from litestar import Litestar, Request
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.plugins import InitPluginProtocol
from litestar.types import Message, Scope
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from apps.common.probes import READINESS_CHECKS
from apps.common.settings import Settings, env
from apps.common.topology import ServiceSpec, database_url, replica_port

__all__ = ["REPLICA_STATE", "ReadReplica", "ReadReplicaPlugin", "replica_reads"]

log = logging.getLogger("apps.db")

REPLICA_STATE: Final = "read_replica"
READ_SOURCE_HEADER: Final = "x-read-source"
FENCE_WAIT_S: Final = 0.2
MONITOR_INTERVAL_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 2.0

READS = Counter("commerce_read_source", "Reads routed by apps.common.read_routing", ["service", "source"])
REPLICA_UP = Gauge("commerce_db_replica_up", "1 while the read replica answers and is in recovery", ["service"])
REPLICA_LAG_S = Gauge(
    "commerce_db_replica_replay_lag_seconds",
    "Age of the last transaction the replica replayed, 0 when it has replayed all it received",
    ["service"],
)
REPLICA_LAG_BYTES = Gauge(
    "commerce_db_replica_lag_bytes", "WAL bytes between the primary's position and the replica's replay", ["service"]
)
SLOT_LAG_BYTES = Gauge(
    "commerce_cdc_slot_lag_bytes", "WAL bytes Debezium's slot has not confirmed yet", ["service", "slot"]
)

# The monitor's two looks, one statement each (sent by asyncpg itself: MonitorLink).
REPLICA_STATUS_SQL: Final = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
)
PRIMARY_STATUS_SQL: Final = (
    "SELECT pg_current_wal_lsn()::text, "
    "(SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots "
    "WHERE slot_name = $1)"
)
CAUGHT_UP_SQL: Final = text("SELECT pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS text) AS pg_lsn)")


def lsn_to_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def replica_url(spec: ServiceSpec) -> str:
    """The service's own URL on the replica's port (same roles and passwords: it is a physical copy)."""
    override = os.environ.get(f"{spec.name.upper()}_READ_DATABASE_URL")
    if override:
        return override
    return make_url(database_url(spec)).set(port=replica_port()).render_as_string(hide_password=False)


class MonitorLink:
    """The monitor's own connection to one end: asyncpg itself, no pool, no transaction.

    Through a SQLAlchemy engine each look cost six round trips per end (the pool's pre-ping is BEGIN, ";",
    ROLLBACK; then BEGIN, the SELECT, and the ROLLBACK that resets a connection given back), with a greenlet
    hop around each, in every API every 2 s. Here a look is its one statement, in autocommit. A connection
    that failed, or whose statement was cut off by the monitor's timeout, is dropped, and the next look
    connects again, as the pool did with a connection it found broken."""

    def __init__(
        self, url: str, application_name: str, on_connect: Callable[[Any], Awaitable[None]] | None = None
    ) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.application_name = application_name
        self.on_connect = on_connect  # run on each new connection before its first statement (a LISTEN)
        self._conn: Any = None  # asyncpg.Connection once connected

    async def fetchrow(self, query: str, *args: object) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": self.application_name}
            )
            if self.on_connect is not None:
                try:
                    await self.on_connect(self._conn)
                except BaseException:
                    self.drop()
                    raise
        try:
            return await self._conn.fetchrow(query, *args)
        except BaseException:  # failed or cancelled mid-statement: its state is unknown
            self.drop()
            raise

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT_S)
            conn.terminate()  # a no-op once closed


class ReadReplica:
    """The replica's engine and what the monitor last saw of it (up or why not, lag)."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.engine: AsyncEngine = create_async_engine(
            replica_url(spec), pool_size=5, max_overflow=5, pool_pre_ping=True, connect_args={"timeout": 2}
        )
        # The monitor's own connections: to the primary, so it never waits behind the request pool, and to
        # the replica, so each look is one statement (MonitorLink).
        monitor = f"replica-monitor:{spec.name}"
        self.primary = MonitorLink(database_url(spec), monitor)
        self.replica = MonitorLink(replica_url(spec), monitor)
        self.reason: str | None = "not checked yet"

    @property
    def up(self) -> bool:
        return self.reason is None

    def mark_down(self, reason: str) -> None:
        if self.reason is None:
            log.warning("read replica down; reads go to the primary", extra={"reason": reason})
        self.reason = reason
        REPLICA_UP.labels(self.spec.name).set(0)

    async def check(self) -> None:
        """One look at both ends: the replica's replay position and lag, the primary's position and slot."""
        async with asyncio.timeout(MONITOR_INTERVAL_S):
            primary_lsn, slot_lag = await self.primary.fetchrow(PRIMARY_STATUS_SQL, self.spec.slot)
        if slot_lag is not None:
            SLOT_LAG_BYTES.labels(self.spec.name, self.spec.slot).set(float(slot_lag))
        try:
            async with asyncio.timeout(MONITOR_INTERVAL_S):
                in_recovery, replay_lsn, lag_s = await self.replica.fetchrow(REPLICA_STATUS_SQL)
        except Exception as exc:  # refused, timed out, shutting down: all mean "read from the primary"
            self.mark_down(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])
            return
        if not in_recovery or replay_lsn is None:
            self.mark_down("not a standby (promoted or not streaming)")
            return
        if self.reason is not None:
            log.info("read replica up; listings read from it again")
        self.reason = None
        REPLICA_UP.labels(self.spec.name).set(1)
        REPLICA_LAG_S.labels(self.spec.name).set(float(lag_s or 0))
        REPLICA_LAG_BYTES.labels(self.spec.name).set(max(lsn_to_int(primary_lsn) - lsn_to_int(replay_lsn), 0))

    async def warm(self) -> None:
        """One connection in the request pool before the first listing: a connect made inside route_read's
        fence wait (FENCE_WAIT_S) could send the first read to the primary. (The monitor's looks used to
        leave one there; they have connections of their own now.)"""
        async with asyncio.timeout(MONITOR_INTERVAL_S), self.engine.connect():
            pass

    async def monitor(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the primary being down is /ready's business, not ours
                await self.check()
            await asyncio.sleep(MONITOR_INTERVAL_S)

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.primary.close()
        await self.replica.close()


async def route_read(primary: AsyncSession, replica: ReadReplica | None) -> tuple[AsyncSession, str]:
    """The rule's points 2 and 3: the replica's session if it is up and caught up, else the primary's."""
    if replica is None or not replica.up:
        return primary, "primary"
    lsn = (await primary.execute(text("SELECT pg_current_wal_lsn()::text"))).scalar_one()
    await primary.rollback()  # gives its connection back: the replica does the reading
    session = AsyncSession(replica.engine, expire_on_commit=False, autoflush=False)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FENCE_WAIT_S
        while not (await session.execute(CAUGHT_UP_SQL, {"lsn": lsn})).scalar_one():
            if loop.time() > deadline:
                await session.close()
                return primary, "primary"
            await asyncio.sleep(0.005)
    except Exception as exc:  # the replica went away between two checks: the primary answers this one
        replica.mark_down(type(exc).__name__)
        with contextlib.suppress(Exception):
            await session.close()
        return primary, "primary"
    return session, "replica"


ServiceT = TypeVar("ServiceT")


def replica_reads(service: Callable[..., ServiceT], *, from_state: Sequence[str] = ()) -> Provide:
    """Like ``create_service_provider``, on the session ``route_read`` picks: for a handler that lists or
    reports, as a handler-level dependency, e.g. ``@get(dependencies={"orders": replica_reads(...)})``."""
    keys = tuple(from_state)

    async def provide(
        db_session: NamedDependency[AsyncSession], state: State, request: Request[Any, Any, Any]
    ) -> AsyncGenerator[Any, None]:
        session, source = await route_read(db_session, state.get(REPLICA_STATE))
        request.state.read_source = source
        READS.labels(state.get("service", "?"), source).inc()
        try:
            yield service(session, *(state[key] for key in keys))
        finally:
            if session is not db_session:
                with contextlib.suppress(Exception):  # the answer is decided; a failed close only loses a connection
                    await session.close()

    return Provide(provide)


async def add_read_source_header(message: Message, scope: Scope) -> None:
    source = scope.get("state", {}).get("read_source")
    if source and message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", []), (READ_SOURCE_HEADER.encode(), source.encode())]


async def replica_readiness(state: State) -> str | None:
    replica: ReadReplica | None = state.get(REPLICA_STATE)
    if replica is None or replica.up:
        return None
    return f"{replica.reason}; reads served by the primary"


_SWITCH_OFF: Final = frozenset({"off", "0", "false"})
_SWITCH_ON: Final = frozenset({"on", "1", "true"})


@dataclass(frozen=True, slots=True)
class ReplicaSettings(Settings):
    """``READ_REPLICA``, read when the app is built: on or off (1/0, true/false); another value stops the
    start naming it (until session 34 it meant on). The replica's URL, ``<SERVICE>_READ_DATABASE_URL``, is
    a name built per service, read by :func:`replica_url` when the replica's engine is made."""

    read_replica: str = env("READ_REPLICA", "on")

    def __post_init__(self) -> None:
        if self.read_replica.lower() not in _SWITCH_OFF | _SWITCH_ON:
            raise self.invalid("read_replica", "neither on nor off")

    @property
    def enabled(self) -> bool:
        return self.read_replica.lower() in _SWITCH_ON


class ReadReplicaPlugin(InitPluginProtocol):
    """Every service's replica wiring: the engine and monitor for the app's life, the header, the check.

    ``READ_REPLICA=off`` leaves it out: every read then goes to the primary and /ready does not mention it.
    """

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.enabled = ReplicaSettings.from_env().enabled

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        if not self.enabled:
            return app_config
        app_config.lifespan.append(self.lifespan)
        app_config.before_send.append(add_read_source_header)
        app_config.state.setdefault(READINESS_CHECKS, {})["replica"] = replica_readiness
        return app_config

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        replica = ReadReplica(self.spec)
        app.state[REPLICA_STATE] = replica
        with contextlib.suppress(Exception):
            await replica.check()  # a first answer before the first request, not 2 s later
            if replica.up:
                await replica.warm()
        task = asyncio.create_task(replica.monitor(), name="read-replica-monitor")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await replica.dispose()
