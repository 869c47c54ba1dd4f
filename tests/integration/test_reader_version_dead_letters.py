"""A record its producer says older readers must not read (min_reader_version) goes to the dead-letter topic
of a consumer on older code, and is applied once after that consumer's deploy and `just dlq redrive`; what
follows it on the same aggregate is applied meanwhile (docs/decisions.md, "Readers older than a version").

All real: the returns service's outbox written by outbox.writer.add_event, its Debezium connector (the
min_reader_version column mapped to a header by the EventRouter, connectors/returns.json), commerce.return,
and the consumer runtime in this process on a group of its own. The type (return.reader_probed) is the
test's own, registered in registries of its own: the stack's consumers of commerce.return do not handle it
and pass it by, as they pass any type they do not handle.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url, topic_for
from outbox import dlq
from outbox.consumer import ConsumerGroup, EventContext
from outbox.dead_letters import ERROR, dead_letter_topic
from outbox.events import Event, EventRegistry
from outbox.runtime import ConsumerRuntime
from outbox.writer import OutboxRecord, add_event
from tests.support.db import connect
from tests.support.kafka import Received, TopicTail, delete_topics
from tests.support.orders import eventually

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow]

TYPE = "return.reader_probed"
TOPIC = topic_for("return")


class ProbedV1(Event, frozen=True, kw_only=True):
    """What the consumer on older code knows."""

    return_id: uuid.UUID
    amount: str


class ProbedV2(ProbedV1, frozen=True, kw_only=True):
    """An addition older readers may ignore."""

    note: str | None = None


class ProbedV3(ProbedV2, frozen=True, kw_only=True):
    """An addition that changes what the event means (as return.received v3's settle_with)."""

    settle_with: list[uuid.UUID] = []


def registry(newest: int) -> EventRegistry:
    known = EventRegistry()
    for version, cls in ((1, ProbedV1), (2, ProbedV2), (3, ProbedV3))[:newest]:
        known.register(cls, TYPE, version, "return", min_reader_version=3 if version == 3 else None)
    return known


PRODUCER = registry(3)


async def write(engine: AsyncEngine, *events: Event) -> list[OutboxRecord]:
    """The events in one transaction of the returns database, as the returns service writes its own."""
    async with async_sessionmaker(engine)() as session, session.begin():
        return [await add_event(session, ev.return_id, ev) for ev in events]  # type: ignore[attr-defined]


class Runtime:
    """The consumer runtime on this test's group, applying ``TYPE`` with a registry that knows up to a version."""

    def __init__(self, group: str, newest: int, engine: AsyncEngine) -> None:
        self.applied: dict[uuid.UUID, Event] = {}
        consumer = ConsumerGroup(group, registry=registry(newest), topic_override=[TOPIC], track_versions=False)

        @consumer.handler(TYPE)
        async def apply(session: object, event: Event, ctx: EventContext) -> None:
            self.applied[ctx.event_id] = event

        self.runtime = ConsumerRuntime(consumer, async_sessionmaker(engine))
        self.task = asyncio.create_task(self.runtime.run())

    async def stop(self) -> None:
        self.runtime.stop()
        await asyncio.wait_for(self.task, timeout=30)


async def test_a_record_older_readers_must_not_read_is_dead_lettered_then_applied_after_the_deploy() -> None:
    group = f"test-min-reader-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(database_url(BY_NAME["returns"]))
    tail = TopicTail(TOPIC)
    running: list[Runtime] = []
    return_id = uuid.uuid4()
    try:
        misread = ProbedV3(return_id=return_id, amount="12.00", settle_with=[uuid.uuid4()])
        later = ProbedV2(return_id=return_id, amount="3.00", note="a later event of the same return")
        first, second = await write(engine, misread, later)

        # Through Debezium: the column reached the record as a header, 1 where the version declares nothing.
        ids = {str(first.event_id), str(second.event_id)}
        seen = await asyncio.to_thread(tail.read_until, lambda got: ids <= {r.headers.get("id") for r in got}, 60)
        by_id: dict[str, Received] = {r.headers["id"]: r for r in seen if r.headers.get("id") in ids}
        assert by_id[str(first.event_id)].headers["min_reader_version"] == "3"
        assert by_id[str(first.event_id)].headers["schema_version"] == "3"
        assert by_id[str(second.event_id)].headers["min_reader_version"] == "1"

        older = Runtime(group, 2, engine)  # a consumer on v2 code
        running.append(older)
        await eventually(
            lambda: _is(second.event_id in older.applied), within=90, what="the later event applied (as v2)"
        )
        letter = await asyncio.to_thread(_letter_of, group, first.event_id)
        assert "return.reader_probed v3 needs a consumer that knows v3 or later" in letter
        assert "up to v2" in letter and "deploy the consumer" in letter
        assert first.event_id not in older.applied and type(older.applied[second.event_id]) is ProbedV2
        await running.pop().stop()

        # The consumer's deploy (its registry knows v3), then the operator's `just dlq redrive GROUP`.
        newer = Runtime(group, 3, engine)
        running.append(newer)
        assert await asyncio.to_thread(dlq.redrive, group, {first.event_id}) == 1
        await eventually(lambda: _is(first.event_id in newer.applied), within=90, what="the redrive applied")
        applied = newer.applied[first.event_id]
        assert isinstance(applied, ProbedV3) and applied.settle_with == misread.settle_with
        assert await _outcomes(group, [first.event_id, second.event_id]) == ["applied", "applied"]
    finally:
        tail.close()
        for runtime in running:
            await runtime.stop()
        await engine.dispose()
        await asyncio.to_thread(delete_topics, [dead_letter_topic(group)])
        conn = await connect("returns")
        try:
            await conn.execute("DELETE FROM inbox WHERE consumer_group = $1", group)
        finally:
            await conn.close()


async def _is(value: bool) -> bool:
    return value


def _letter_of(group: str, event_id: uuid.UUID) -> str:
    """The dlq.error of the group's dead letter of ``event_id`` (waiting up to a minute for it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for _, letter in dlq.read(group, from_start=True):
            if letter.event_id == event_id:
                return letter.headers[ERROR]
        time.sleep(0.5)
    raise AssertionError(f"no dead letter of {event_id} in {dead_letter_topic(group)}")


async def _outcomes(group: str, event_ids: list[uuid.UUID]) -> list[str]:
    conn = await connect("returns")
    try:
        rows = await conn.fetch(
            "SELECT outcome FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2::uuid[]) ORDER BY event_id",
            group,
            event_ids,
        )
        return [row["outcome"] for row in rows]
    finally:
        await conn.close()
