"""A group's linger_ms: the prefetch thread's wait for more events once a batch needs the database.

Pure logic: ConsumerRuntime._fetch against a scripted stand-in for KafkaSide.fetch (no broker, no
database; nothing here opens a connection)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.customer.consumers import group as customer_stats
from outbox.runtime import ConsumerRuntime
from tests.unit.test_consumer_plan import _message


class ScriptedKafka:
    """KafkaSide.fetch: each call returns the next scripted poll; past the script, waits out the timeout
    with nothing (as librdkafka does when no record arrives)."""

    def __init__(self, polls: list[list[Any]]) -> None:
        self.polls = polls
        self.calls: list[tuple[int, float]] = []

    def commit_due(self) -> None:  # the polling thread sends offsets and lag before each poll: nothing here
        pass

    def report_lag(self) -> None:
        pass

    def fetch(self, batch_size: int, timeout: float) -> list[Any]:
        self.calls.append((batch_size, timeout))
        if self.polls:
            return self.polls.pop(0)[:batch_size]
        time.sleep(timeout)
        return []


def runtime(polls: list[list[Any]], *, linger_ms: int, batch_size: int = 1000) -> tuple[ConsumerRuntime, ScriptedKafka]:
    group = dataclasses.replace(customer_stats, linger_ms=linger_ms)
    never_used = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # connects on first use only
    rt = ConsumerRuntime(group, async_sessionmaker(never_used), batch_size=batch_size, poll_timeout=0.05)
    kafka = ScriptedKafka(polls)
    rt.kafka = kafka  # type: ignore[assignment]  # _fetch polls it (and sends offsets and lag, no-ops here)
    return rt, kafka


def created(offset: int) -> Any:
    return _message(uuid.uuid4(), offset=offset)


def ignored(offset: int) -> Any:
    return _message(uuid.uuid4(), event_type="order.status_changed", offset=offset)


def test_without_linger_a_batch_is_handed_over_at_its_first_record() -> None:
    rt, kafka = runtime([[created(1)], [created(2)]], linger_ms=0)
    batch, plan = rt._fetch()
    assert [m.offset() for m in batch.messages] == [1]
    assert len(kafka.calls) == 1 and plan is not None


def test_linger_gathers_what_arrives_within_it_and_no_longer() -> None:
    rt, kafka = runtime([[created(1)], [created(2)], [ignored(3), created(4)]], linger_ms=40)
    started = time.monotonic()
    batch, plan = rt._fetch()
    elapsed = time.monotonic() - started
    assert [m.offset() for m in batch.messages] == [1, 2, 3, 4]
    assert plan is not None and [c.offset for c in plan.claims] == [1, 2, 4]
    assert batch.offsets == {("commerce.order", 0): 5}
    # It waited out the linger (nothing came after offset 4), never longer than the linger per poll.
    assert 0.035 <= elapsed < 0.5
    assert all(timeout <= 0.04 for _, timeout in kafka.calls[1:])


def test_linger_stops_once_the_batch_is_full() -> None:
    rt, kafka = runtime([[created(1)], [created(2), created(3)], [created(4)]], linger_ms=10_000, batch_size=3)
    started = time.monotonic()
    batch, _ = rt._fetch()
    assert [m.offset() for m in batch.messages] == [1, 2, 3]
    assert time.monotonic() - started < 1  # not the 10 s linger
    assert [size for size, _ in kafka.calls] == [3, 2]  # asks only for the room left


def test_a_stop_ends_the_linger_at_once() -> None:
    rt, kafka = runtime([[created(1)], [created(2)]], linger_ms=10_000)
    rt.stop()
    started = time.monotonic()
    batch, _ = rt._fetch()
    assert [m.offset() for m in batch.messages] == [1]
    assert time.monotonic() - started < 1 and len(kafka.calls) == 1


def test_a_batch_of_ignored_events_does_not_linger() -> None:
    # Nothing for the database: the thread polls on for the poll timeout (0.05 s here) as before, no more.
    rt, kafka = runtime([[ignored(1)]], linger_ms=10_000)
    started = time.monotonic()
    batch, plan = rt._fetch()
    assert not batch.needs_database and plan is None
    assert time.monotonic() - started < 1
    assert len(kafka.calls) == 2 and all(timeout <= 0.05 for _, timeout in kafka.calls)  # no linger-long poll
