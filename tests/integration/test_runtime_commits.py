"""An idle consumer commits what it applied without holding its event loop (session 33).

The event loop sent the offsets (KafkaSide.commit_due) while the prefetch thread sat in consume(): librdkafka's
client let that commit wait for the thread's polls, and since an idle thread keeps its empty polls to itself
(IDLE_HAND_OVER_S), an idle consumer's first commit froze its loop (its /ready, the next batch) for ~5 s. The
polling thread sends them now, between polls."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap
from outbox.consumer import ConsumerGroup
from outbox.events import payload_as_dict
from outbox.runtime import ConsumerRuntime
from outbox.topics import ensure_topics
from tests.support.kafka import delete_group_topics
from tests.support.orders import eventually, order_created, produce_raw

pytestmark = pytest.mark.usefixtures("stack")

# One event, so one batch and one commit: the first commit is due at once (a later one waits out
# COMMIT_INTERVAL_S, by design).
EVENTS = 1


class LoopGaps:
    """The longest the event loop went without running a 50-ms ticker."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def stop(self) -> None:
        self._task.cancel()


async def test_an_idle_consumer_commits_at_once_and_its_loop_never_waits_for_the_polls() -> None:
    topic = f"test.commits.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap(), [topic], partitions=1)
    group = ConsumerGroup(f"test-commits-{uuid.uuid4().hex[:8]}", topic_override=[topic], track_versions=False)
    seen: list[uuid.UUID] = []

    @group.handler("order.created")
    async def record(session: Any, event: Any, ctx: Any) -> None:
        seen.append(event.order_id)

    engine = create_async_engine(database_url(BY_NAME["customer"]))
    runtime = ConsumerRuntime(group, async_sessionmaker(engine))  # the stack's poll timeout and intervals
    task = asyncio.create_task(runtime.run())
    checker = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": group.name})
    gaps: LoopGaps | None = None
    try:

        async def owns_its_partition() -> bool:
            return runtime.ready

        await eventually(owns_its_partition, within=30, what="the runtime owning its partition")
        await asyncio.sleep(1.5)  # idle: the prefetch thread keeps its empty polls
        gaps = LoopGaps()
        for _ in range(EVENTS):
            order = order_created(f"test-commits-{uuid.uuid4()}"[:36])
            produce_raw(topic, key=str(order.order_id), event_type="order.created", payload=payload_as_dict(order))

        async def all_applied() -> bool:
            return len(seen) == EVENTS

        await eventually(all_applied, within=30, what="the events applied")
        applied_at = time.monotonic()

        async def committed() -> bool:
            [tp] = await asyncio.to_thread(checker.committed, [TopicPartition(topic, 0)], timeout=10)
            return bool(tp.offset == EVENTS)

        await eventually(committed, within=30, what="the offsets committed")
        visible_after = time.monotonic() - applied_at
        await asyncio.sleep(1.0)  # and the loop stays free after the commit
        # Before: the loop stopped for 4.9-5.0 s in the commit and the offsets showed 5.1 s after the apply.
        assert gaps.longest < 1.0, f"the event loop stood still for {gaps.longest:.2f} s"
        assert visible_after < 2.5, f"offsets committed {visible_after:.2f} s after the apply"
    finally:
        if gaps is not None:
            gaps.stop()
        checker.close()
        runtime.stop()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
        delete_group_topics(group.name, topic)
