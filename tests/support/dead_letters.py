"""A test acknowledges the dead letters it caused in a stack consumer group, and only those.

`outbox.dlq.acknowledge(group, ids)` moves a group's redrive progress over those events' letters only (it
stops at anyone else's pending letter). A replay of a stack group makes letters no test names: every
event on the topic that could not apply is dead-lettered again (the inbox lets a dead-lettered event be
tried again). Those the group had already handled (every earlier letter of that event acknowledged or
redriven) are the replay's repeats, and `acknowledging_repeats` acknowledges them; a letter for an event
never dead-lettered before, or one still pending, is left for whoever reads the alert.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, redirect_stdout
from io import StringIO

from confluent_kafka import Consumer, TopicPartition

from apps.common.topology import kafka_bootstrap
from outbox import dlq
from outbox.dead_letters import dead_letter_topic


def letter_ends(group: str) -> dict[int, int]:
    """Per partition of the group's dead-letter topic, the offset its next letter will get."""
    topic = dead_letter_topic(group)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": f"test-dlq-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions}
    finally:
        consumer.close()


def acknowledge(group: str, event_ids: set[uuid.UUID]) -> int:
    """outbox.dlq.acknowledge for these events' letters, without its line on the test's output."""
    with redirect_stdout(StringIO()):
        return dlq.acknowledge(group, event_ids, kafka_bootstrap())


def repeated_since(group: str, since: dict[int, int]) -> set[uuid.UUID]:
    """Events with a letter at or past ``since`` whose every letter before it was already handled."""
    done_up_to = dlq.redriven_up_to(group, kafka_bootstrap())
    handled: dict[uuid.UUID, bool] = {}  # event -> every letter before ``since`` done
    later: set[uuid.UUID] = set()
    for _, letter in dlq.read(group, from_start=True, bootstrap=kafka_bootstrap()):
        event_id, partition, offset = letter.event_id, letter.message.partition() or 0, letter.message.offset() or 0
        if event_id is None:
            continue
        if offset >= since.get(partition, 0):
            later.add(event_id)
        else:
            handled[event_id] = handled.get(event_id, True) and offset < done_up_to.get(partition, 0)
    return {event_id for event_id in later if handled.get(event_id, False)}


@asynccontextmanager
async def acknowledging_repeats(group: str) -> AsyncIterator[None]:
    """Around a replay of a stack group: acknowledge the letters it repeated, once it caught up."""
    since = await asyncio.to_thread(letter_ends, group)
    try:
        yield
    finally:
        repeats = await asyncio.to_thread(repeated_since, group, since)
        if repeats:
            await asyncio.to_thread(acknowledge, group, repeats)
