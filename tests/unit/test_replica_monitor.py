"""The read-replica monitor's looks (apps/common/read_routing.py, session 32, K): one statement per end, on a
connection of its own, with no transaction around it. Through the SQLAlchemy pools each look was six round
trips per end (the pre-ping's BEGIN, ";", ROLLBACK, then BEGIN, the SELECT, the reset's ROLLBACK), every 2 s in
every API. What the monitor concludes is unchanged: up while the replica answers in recovery, down with the
reason when it fails or was promoted, the lag gauges; a broken or cut-off connection is replaced."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from apps.common import read_routing
from apps.common.read_routing import PRIMARY_STATUS_SQL, REPLICA_STATUS_SQL, ReadReplica
from apps.common.topology import BY_NAME
from tests.unit.test_monitoring import _FakeConnection

pytestmark = pytest.mark.unit

SPEC = BY_NAME["catalog"]


class FakeConnection(_FakeConnection):
    """An asyncpg connection to one end (port) answering what ``world`` says for it."""

    def __init__(self, world: World, port: int) -> None:
        super().__init__()
        self.world, self.port = world, port

    async def fetchrow(self, query: str, *args: object) -> tuple[Any, ...]:
        self.world.sent.append((self.port, query, args))
        answer = self.world.answers[self.port]
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.sleep(60)
        return tuple(answer)


class World:
    """What each end answers, and every connection made and statement sent (port, SQL, arguments)."""

    def __init__(self) -> None:
        self.answers: dict[int, Any] = {5432: ("0/3000000", 4096), 5433: (True, "0/2FFF000", 0)}
        self.sent: list[tuple[int, str, tuple[object, ...]]] = []
        self.connections: list[FakeConnection] = []
        self.settings: list[dict[str, str]] = []

    async def connect(self, dsn: str, **options: Any) -> FakeConnection:
        """asyncpg.connect as the monitor calls it."""
        assert dsn.startswith("postgresql://") and options["timeout"] > 0
        server_settings: dict[str, str] = options["server_settings"]
        conn = FakeConnection(self, int(dsn.rsplit(":", 1)[1].split("/")[0]))
        self.connections.append(conn)
        self.settings.append(server_settings)
        return conn


def verdict(replica: ReadReplica) -> str | None:
    """Why the replica is down, None while up (read afresh: a look changes it)."""
    return replica.reason


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    world = World()
    monkeypatch.setattr("asyncpg.connect", world.connect)
    yield world


async def test_a_look_is_one_statement_per_end_on_connections_kept_between_looks(world: World) -> None:
    replica = ReadReplica(SPEC)
    try:
        for _ in range(3):
            await replica.check()
        assert replica.up
        assert world.sent == [(5432, PRIMARY_STATUS_SQL, (SPEC.slot,)), (5433, REPLICA_STATUS_SQL, ())] * 3
        assert [c.port for c in world.connections] == [5432, 5433]
        assert all(s == {"application_name": "replica-monitor:catalog"} for s in world.settings)
        lag = REGISTRY.get_sample_value("commerce_db_replica_lag_bytes", {"service": "catalog"})
        assert lag == 0x3000000 - 0x2FFF000
    finally:
        await replica.dispose()
    assert all(c.closed for c in world.connections)


async def test_a_failed_replica_is_down_with_its_reason_and_reconnected_next_time(world: World) -> None:
    replica = ReadReplica(SPEC)
    try:
        await replica.check()
        world.answers[5433] = ConnectionRefusedError("refused")
        await replica.check()
        assert not replica.up and replica.reason is not None and "refused" in replica.reason
        assert world.connections[1].closed
        world.answers[5433] = (True, "0/3000000", 0)
        await replica.check()
        assert verdict(replica) is None
        assert [c.port for c in world.connections] == [5432, 5433, 5433]
    finally:
        await replica.dispose()


async def test_a_promoted_replica_is_down(world: World) -> None:
    replica = ReadReplica(SPEC)
    try:
        world.answers[5433] = (False, "0/3000000", 0)
        await replica.check()
        assert replica.reason == "not a standby (promoted or not streaming)"
    finally:
        await replica.dispose()


async def test_a_look_cut_off_by_the_timeout_drops_its_connection(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_routing, "MONITOR_INTERVAL_S", 0.05)
    replica = ReadReplica(SPEC)
    try:
        await replica.check()
        world.answers[5433] = "hang"
        await replica.check()
        assert not replica.up and replica.reason is not None and replica.reason.startswith("TimeoutError")
        assert world.connections[1].closed  # its statement's state unknown: never reused
    finally:
        await replica.dispose()


async def test_a_primary_that_fails_leaves_the_verdict_as_it_was(world: World) -> None:
    """The primary being down is /ready's business (the monitor's loop swallows the error); the replica's
    state is not judged from a look that did not reach it."""
    replica = ReadReplica(SPEC)
    try:
        await replica.check()
        world.answers[5432] = OSError("primary away")
        with pytest.raises(OSError):
            await replica.check()
        assert replica.up
        assert world.connections[0].closed
        assert world.sent[-1][0] == 5432
    finally:
        await replica.dispose()
