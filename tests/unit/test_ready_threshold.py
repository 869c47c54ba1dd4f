"""A consumer's GET /ready while a batch is retried for contention: a moment's collision is not an outage.

A deadlock or serialization retry of a batch made /ready answer 503 for the 0.2-0.4 s until the retry
passed (W, session 30). The first CONTENTION_RETRIES_READY contention failures in a row leave the consumer
ready (the database answered: it stays reported as up); the next one, or any other retryable failure, makes
it not ready as before. Pure logic, with the runtime of test_consumer_readiness (nothing connects).
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from outbox.retry import RETRYABLE_SQLSTATES, contended, is_retryable
from outbox.runtime import CONTENTION_RETRIES_READY
from tests.unit.test_consumer_readiness import apply_one, runtime


def through_sqlalchemy(orig: BaseException) -> DBAPIError:
    """As SQLAlchemy's asyncpg dialect raises a driver error it has no class for: a plain DBAPIError."""
    return DBAPIError("UPDATE inventory ...", None, orig)


def deadlock() -> DBAPIError:
    return through_sqlalchemy(asyncpg.DeadlockDetectedError("deadlock detected"))


def serialization_failure() -> DBAPIError:
    return through_sqlalchemy(asyncpg.SerializationError("could not serialize access due to concurrent update"))


def lock_timeout() -> DBAPIError:
    return through_sqlalchemy(asyncpg.LockNotAvailableError("canceling statement due to lock timeout"))


def connection_refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "Connection refused"))


@pytest.mark.parametrize("make", [deadlock, serialization_failure, lock_timeout])
def test_a_contention_retry_that_passes_at_once_keeps_the_consumer_ready(make: Callable[[], DBAPIError]) -> None:
    rt, seen = runtime([make() for _ in range(CONTENTION_RETRIES_READY)])
    apply_one(rt)
    assert len(seen) == CONTENTION_RETRIES_READY
    for ready, body in seen:
        assert ready is True and body["database"] is True and "waiting_for" not in body, body


def test_contention_that_keeps_failing_makes_the_consumer_not_ready() -> None:
    failures = CONTENTION_RETRIES_READY + 2
    rt, seen = runtime([deadlock() for _ in range(failures)])
    apply_one(rt)
    verdicts = [ready for ready, _ in seen]
    assert verdicts == [True] * CONTENTION_RETRIES_READY + [False, False]
    _, body = seen[-1]
    # The database answers (it refused for contention), but the batch waits on it; since the first failure.
    assert body["database"] is True and body["waiting_for"] == "database", body
    assert "deadlock detected" in str(body["error"])
    assert seen[-2][1]["since"] == body["since"]
    assert rt.readiness()[0] is True  # applied at last


def test_an_outage_is_not_ready_at_once_even_after_contention() -> None:
    rt, seen = runtime([deadlock(), connection_refused(), deadlock()])
    apply_one(rt)
    assert [ready for ready, _ in seen] == [True, False, False]
    assert seen[1][1]["database"] is False and seen[1][1]["waiting_for"] == "database"
    # The connection is back and the next failure is a deadlock: still waiting, as since the outage.
    assert seen[2][1]["since"] == seen[1][1]["since"]


def test_contention_counts_again_from_zero_after_another_failure() -> None:
    """Consecutive: an outage between two deadlocks restarts the count, and the outage's verdict stands
    until the batch applies (waiting is only cleared by an applied batch)."""
    rt, seen = runtime([connection_refused(), deadlock(), deadlock(), deadlock()])
    apply_one(rt)
    assert [ready for ready, _ in seen] == [False, False, False, False]
    assert rt.readiness()[0] is True


@pytest.mark.parametrize("make", [deadlock, serialization_failure, lock_timeout])
def test_contention_is_told_apart_in_both_shapes(make: Callable[[], DBAPIError]) -> None:
    error = make()
    assert error.orig is not None
    assert contended(error) and contended(error.orig)
    assert not contended(connection_refused())
    assert not contended(through_sqlalchemy(asyncpg.ReadOnlySQLTransactionError("read-only")))


def test_a_read_only_database_is_retried_not_raised() -> None:
    """25006 (a failover's standby, default_transaction_read_only): the inbox claim's INSERT raised it out of
    the runtime, not retried (the batch's error ended the consumer's run); now it waits like an outage."""
    read_only = through_sqlalchemy(
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")
    )
    assert "25006" in RETRYABLE_SQLSTATES and is_retryable(read_only)
    rt, seen = runtime([read_only])
    apply_one(rt)
    [(ready, body)] = seen
    assert ready is False and body["waiting_for"] == "database", body
