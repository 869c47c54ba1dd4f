"""The rebuild's window, on the real broker and database: a consumer started between the replay's member check
and its rebuild lost events (W, session 30): it applied events into the projection and inbox the rebuild then
deleted, past offsets it had committed. The rebuild now moves the offsets as the last step of the transaction
that locked and emptied the projection: the broker refuses while the group has a member (and the transaction
rolls back), and a consumer that joins after the reset waits on the locks until the commit.

A throwaway group, topic and table (in the order service's database, next to its inbox), removed afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap
from outbox import replay
from outbox.topics import ensure_topics
from tests.support.kafka import delete_topics

pytestmark = pytest.mark.usefixtures("stack")

EVENTS = 3


@dataclass(frozen=True)
class Throwaway:
    group: str
    topic: str
    table: str
    url: str


@pytest.fixture
def throwaway() -> Iterator[Throwaway]:
    name = f"replay-window-{uuid.uuid4().hex[:10]}"
    found = Throwaway(name, f"{name}.events", name.replace("-", "_"), database_url(BY_NAME["order"]))
    ensure_topics(kafka_bootstrap(), [found.topic], partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap()})
    for n in range(EVENTS):
        producer.produce(found.topic, key=b"k", value=str(n).encode())
    assert producer.flush(10) == 0
    asyncio.run(_sql(found.url, f'CREATE TABLE "{found.table}" (id int PRIMARY KEY)'))
    try:
        yield found
    finally:
        asyncio.run(_sql(found.url, f'DROP TABLE IF EXISTS "{found.table}"'))
        asyncio.run(_sql(found.url, "DELETE FROM inbox WHERE consumer_group = :g", g=found.group))
        delete_topics([found.topic])
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap()})
        for future in admin.delete_consumer_groups([found.group], request_timeout=10).values():
            future.result()


async def _sql(url: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _applied(t: Throwaway) -> None:
    """The projection and inbox as a consumer of the group leaves them after applying one event."""
    await _sql(t.url, f'INSERT INTO "{t.table}" VALUES (1)')
    await _sql(
        t.url,
        "INSERT INTO inbox (consumer_group, event_id, event_type, outcome, topic, kafka_partition, kafka_offset) "
        "VALUES (:g, :e, 'test.event', 'applied', :t, 0, 0)",
        g=t.group,
        e=uuid.uuid4(),
        t=t.topic,
    )


async def _rows(t: Throwaway) -> tuple[int, int]:
    (projection,) = await _sql(t.url, f'SELECT count(*) FROM "{t.table}"')
    (inbox,) = await _sql(t.url, "SELECT count(*) FROM inbox WHERE consumer_group = :g", g=t.group)
    return int(str(projection[0])), int(str(inbox[0]))


def _member(t: Throwaway) -> Consumer:
    """A consumer of the group, joined and holding its partition, offsets committed at the end."""
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": t.group, "enable.auto.commit": False})
    consumer.subscribe([t.topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the throwaway consumer got no partition"
    consumer.commit(offsets=[TopicPartition(t.topic, 0, EVENTS)], asynchronous=False)
    return consumer


def _committed(t: Throwaway) -> int:
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": t.group})
    try:
        (tp,) = consumer.committed([TopicPartition(t.topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def _wait_empty(t: Throwaway) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap()})
    deadline = time.monotonic() + 30
    while replay.live_members(admin, t.group) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert replay.live_members(admin, t.group) == 0


def _plans(t: Throwaway) -> list[replay.PartitionPlan]:
    return replay.plan(
        t.group, [t.topic], to_earliest=True, to_datetime=None, to_offset=None, bootstrap=kafka_bootstrap()
    )


def test_a_member_that_joined_before_the_reset_rolls_the_rebuild_back(throwaway: Throwaway) -> None:
    t = throwaway
    asyncio.run(_applied(t))
    member = _member(t)  # started by hand after the replay's member check
    try:
        plans = _plans(t)
        with pytest.raises((replay.ResetRefused, KafkaException)):
            asyncio.run(
                replay.rebuild(t.group, t.url, (t.table,), lambda: replay.reset(t.group, plans, kafka_bootstrap()))
            )
        assert asyncio.run(_rows(t)) == (1, 1), "the refused reset's transaction emptied the projection"
        assert _committed(t) == EVENTS
    finally:
        member.close()


def test_a_consumer_joining_after_the_reset_waits_for_the_commit(throwaway: Throwaway) -> None:
    t = throwaway
    asyncio.run(_applied(t))
    _member(t).close()
    _wait_empty(t)
    plans = _plans(t)
    seen_during: list[str] = []

    def reset_then_touch() -> None:
        replay.reset(t.group, plans, kafka_bootstrap())
        # What a consumer started right now would do: read the projection, claim an event in the inbox.
        for statement in (
            f'SELECT count(*) FROM "{t.table}"',
            "INSERT INTO inbox (consumer_group, event_id, event_type, outcome, topic, kafka_partition, kafka_offset) "
            "SELECT consumer_group, event_id, event_type, outcome, topic, kafka_partition, kafka_offset FROM inbox "
            "WHERE consumer_group = :g ON CONFLICT DO NOTHING",
        ):
            # Its own thread and event loop: this runs in the rebuild's worker thread, inside its transaction.
            probe = threading.Thread(target=lambda s=statement: seen_during.append(_blocked(t, s)))
            probe.start()
            probe.join()

    asyncio.run(replay.rebuild(t.group, t.url, (t.table,), reset_then_touch))
    assert seen_during == ["blocked", "blocked"], seen_during
    assert asyncio.run(_rows(t)) == (0, 0)
    assert _committed(t) == 0


def _blocked(t: Throwaway, statement: str) -> str:
    async def attempt() -> str:
        engine = create_async_engine(t.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("SET LOCAL lock_timeout = '300ms'"))
                await conn.execute(text(statement), {"g": t.group})
                return "ran"
        except DBAPIError as exc:
            return "blocked" if "lock timeout" in str(exc) else f"error: {exc}"
        finally:
            await engine.dispose()

    return asyncio.run(attempt())
