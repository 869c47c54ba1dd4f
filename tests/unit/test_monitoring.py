"""The stack exporter's and the pool metrics' arithmetic: slot lag in seconds, dead letters pending,
connector states, pool figures; the exporter's connection kept across scrapes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.pool import NullPool, QueuePool

from apps.common.pool_metrics import pool_figures
from infra.dead_letter_stats import pending_count
from infra.stack_exporter import ReusedConnection, connector_rows, lag_seconds

SAMPLES = [(100.0, 1000), (102.0, 1500), (104.0, 2000), (106.0, 2600)]


@pytest.mark.parametrize(
    ("confirmed", "current", "expected"),
    [
        (2600, 2600, 0.0),  # caught up
        (3000, 2600, 0.0),  # confirmed past the last sample read
        (1500, 2600, 6.0),  # first unconfirmed WAL was seen at 104 (sample 2000 > 1500)
        (1499, 2600, 8.0),  # ... at 102
        (500, 2600, 10.0),  # older than every sample: as old as the oldest one (a lower bound)
        (2600, 2700, 0.0),  # all unconfirmed WAL written after the last sample
    ],
)
def test_slot_lag_is_the_age_of_the_first_unconfirmed_sample(confirmed: int, current: int, expected: float) -> None:
    assert lag_seconds(SAMPLES, confirmed, current, now=110.0) == expected


def test_slot_lag_without_samples_is_zero() -> None:
    assert lag_seconds([], 10, 20, now=1.0) == 0.0


def test_dead_letters_pending_start_at_the_redrive_commit_or_the_topic_start() -> None:
    watermarks = {0: (0, 10), 1: (5, 9), 2: (0, 0)}
    assert pending_count(watermarks, {0: 7}) == (14, 3 + 4)  # partition 1 never redriven: from its low mark
    assert pending_count(watermarks, {0: 10, 1: 9}) == (14, 0)
    assert pending_count(watermarks, {1: 2}) == (14, 10 + 4)  # a commit below the low mark counts from it


def test_connector_rows_mark_missing_and_failed_connectors_not_running() -> None:
    deployed: dict[str, dict[str, object]] = {
        "order-outbox": {"status": {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}},
        "payment-outbox": {"status": {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "FAILED"}]}},
        "catalog-outbox": {"status": {"connector": {"state": "PAUSED"}, "tasks": [{"id": 0, "state": "PAUSED"}]}},
    }
    states, running, tasks = connector_rows(
        ["order-outbox", "payment-outbox", "catalog-outbox", "returns-outbox"], deployed
    )
    assert dict(running) == {
        ("catalog-outbox",): 0.0,
        ("order-outbox",): 1.0,
        ("payment-outbox",): 1.0,
        ("returns-outbox",): 0.0,
    }
    assert (("returns-outbox", "MISSING"), 1.0) in states
    assert (("catalog-outbox", "PAUSED"), 1.0) in states
    assert dict(tasks) == {("order-outbox", "0"): 1.0, ("payment-outbox", "0"): 0.0, ("catalog-outbox", "0"): 0.0}


def test_a_running_connector_without_a_task_reports_task_0_not_running() -> None:
    """Kafka Connect lists a task only once its start() has returned; Debezium's start() waits up to 30 minutes
    (900 tries, 2 s apart) for a slot it cannot use (an invalidated slot on 2026-11-28: the connector RUNNING,
    ``tasks: []`` for a minute until the slot was dropped). With no row, ConnectorTaskNotRunning never fired.
    A STOPPED or PAUSED connector is ConnectorNotRunning's, not this one's."""
    deployed: dict[str, dict[str, object]] = {
        "order-outbox": {"status": {"connector": {"state": "RUNNING"}, "tasks": []}},
        "catalog-outbox": {"status": {"connector": {"state": "STOPPED"}, "tasks": []}},
    }
    _, running, tasks = connector_rows(["order-outbox", "catalog-outbox"], deployed)
    assert dict(running) == {("order-outbox",): 1.0, ("catalog-outbox",): 0.0}
    assert dict(tasks) == {("order-outbox", "0"): 0.0}


def test_pool_figures_follow_checkouts_and_overflow() -> None:
    pool = QueuePool(lambda: object(), pool_size=2, max_overflow=3)  # type: ignore[arg-type]
    assert pool_figures(pool) == {"checked_out": 0.0, "idle": 0.0, "overflow": 0.0, "size": 2.0, "max": 5.0}
    held = [pool.connect() for _ in range(3)]
    assert pool_figures(pool)["checked_out"] == 3.0
    assert pool_figures(pool)["overflow"] == 1.0
    held[0].close()
    figures = pool_figures(pool)
    assert (figures["checked_out"], figures["idle"]) == (2.0, 1.0)
    for connection in held[1:]:
        connection.close()


def test_a_pool_without_a_size_reports_zeros() -> None:
    assert set(pool_figures(NullPool(lambda: object())).values()) == {0.0}  # type: ignore[arg-type]


class _FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.closed = True

    async def close(self) -> None:
        self.closed = True


async def test_the_exporter_keeps_its_connection_and_replaces_it_after_a_failure_or_a_close() -> None:
    opened: list[_FakeConnection] = []

    async def connect() -> Any:
        opened.append(_FakeConnection())
        return opened[-1]

    reused = ReusedConnection(connect)
    for _ in range(3):  # scrapes in a row: one connection
        async with reused() as conn:
            assert conn is opened[0]
    with pytest.raises(TimeoutError):
        async with reused():
            raise TimeoutError  # a query cancelled halfway: that connection is not trusted again
    assert opened[0].closed
    async with reused() as conn:
        assert conn is opened[1]
    opened[1].closed = True  # the server closed it (a restart)
    async with reused() as conn:
        assert conn is opened[2]
    await reused.close()
    assert len(opened) == 3 and opened[2].closed
