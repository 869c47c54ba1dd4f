"""A consumer's GET /ready while a batch is retried: it names what the batch waits for.

It answered "database": false for any retryable failure, so a customer service answering 503 to the
order saga's prepare hook (the buyers' data keys) read as the consumer's own database being down.
Pure logic: ConsumerRuntime._apply_with_retries with the prepare step and the transaction scripted (no
broker, no database; nothing here opens a connection)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.common.errors import DependencyUnavailable
from apps.customer.consumers import group as customer_stats
from outbox.decoding import parse
from outbox.errors import RetryableError
from outbox.retry import waits_for
from outbox.runtime import ConsumerRuntime
from tests.unit.test_consumer_plan import _message


class OwnsPartitions:
    owned = {("commerce.order", 0), ("commerce.order", 1)}


def runtime(failures: list[BaseException]) -> tuple[ConsumerRuntime, list[tuple[bool, dict[str, object]]]]:
    """A runtime whose batches fail with ``failures`` in turn, then apply; the /ready answers seen while
    each retry waited."""
    never_used = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # connects on first use only
    rt = ConsumerRuntime(customer_stats, async_sessionmaker(never_used), max_backoff=0.01)
    rt.kafka = OwnsPartitions()  # type: ignore[assignment]  # only .owned is read by readiness()
    rt.database_ok = True  # the start-up probe answered
    pending = list(failures)

    async def attempt(*_: Any, **__: Any) -> None:
        if pending:
            raise pending.pop(0)

    seen: list[tuple[bool, dict[str, object]]] = []

    async def wait(_: float) -> None:
        seen.append(rt.readiness())

    rt._prepare = attempt  # type: ignore[method-assign]
    rt.transaction.apply = attempt  # type: ignore[method-assign]
    rt._wait = wait  # type: ignore[method-assign,assignment]
    return rt, seen


def apply_one(rt: ConsumerRuntime) -> None:
    batch = parse(customer_stats, [_message(uuid.uuid4())])
    asyncio.run(rt._apply_with_retries(batch, None))


def customer_service_503() -> RetryableError:
    """What the order saga's prepare hook raises (apps/common/data_keys.py) when the customer service fails."""
    try:
        raise DependencyUnavailable("customer", "answered 503")
    except DependencyUnavailable as exc:
        try:
            raise RetryableError(str(exc), dependency=exc.dependency) from exc
        except RetryableError as retryable:
            return retryable


def test_a_dependency_that_fails_is_named_and_the_database_is_not_blamed() -> None:
    rt, seen = runtime([customer_service_503(), customer_service_503()])
    apply_one(rt)
    assert len(seen) == 2
    for ready, body in seen:
        assert ready is False
        assert body["database"] is True and body["waiting_for"] == "customer", body
        assert body["error"] == "customer service unavailable: answered 503"
    assert seen[0][1]["since"] == seen[1][1]["since"]  # since the first failure, not the last
    # Applied: ready again, and the body is what it always was.
    assert rt.readiness() == (True, {"ready": True, "group": "customer-stats", "partitions": 2, "database": True})


def test_a_database_that_fails_is_named_as_the_database() -> None:
    lost = OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "Connection refused"))
    rt, seen = runtime([lost])
    apply_one(rt)
    [(ready, body)] = seen
    assert ready is False and body["database"] is False and body["waiting_for"] == "database", body
    assert rt.readiness()[0] is True


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # The service client's error raised from aiohttp's (an OSError): retryable through its cause, and
        # the customer service's, not the database's.
        (lambda: _raised(DependencyUnavailable("customer", "unreachable"), ConnectionRefusedError()), "customer"),
        (lambda: RetryableError("3 dead letters not acknowledged by Kafka", dependency="kafka"), "kafka"),
        (lambda: RetryableError("an order of this batch was decided concurrently"), "database"),
        (lambda: ConnectionResetError(104, "reset"), "database"),
    ],
)
def test_what_a_retryable_failure_waits_for(make: Callable[[], BaseException], expected: str) -> None:
    assert waits_for(make()) == expected


def _raised(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error
