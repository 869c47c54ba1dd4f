"""Read what arrives on a topic from 'now' on, with a deadline (no fixed sleeps); drop a test's own topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from apps.common.topology import kafka_bootstrap
from outbox import topics as outbox_topics
from outbox.dead_letters import dead_letter_topic
from outbox.decoding import raw_headers, where


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes

    @property
    def event_id(self) -> str:
        return self.headers["id"]


def _received(message: Message) -> Received:
    key = message.key()
    topic, partition, offset = where(message)
    return Received(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode() if key is not None else None,
        headers={name: (value or b"").decode() for name, value in raw_headers(message)},
        value=message.value() or b"",
    )


_NO_LEADER_YET = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
}


class TopicTail:
    """Assigned to every partition of a topic at its current end, so only new records are seen."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap(),
                "group.id": f"test-tail-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        metadata = self.consumer.list_topics(topic, timeout=10)
        partitions = []
        for partition in metadata.topics[topic].partitions:
            partitions.append(TopicPartition(topic, partition, self._end(partition)))
        self.consumer.assign(partitions)

    def _end(self, partition: int, within: float = 10.0) -> int:
        # A topic created a moment ago may have no leader yet (NOT_LEADER_FOR_PARTITION): ask again.
        deadline = time.monotonic() + within
        while True:
            try:
                return int(self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)[1])
            except KafkaException as exc:
                if exc.args[0].code() not in _NO_LEADER_YET or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def read_until(self, done: Callable[[list[Received]], bool], timeout: float = 60.0) -> list[Received]:
        seen: list[Received] = []
        deadline = time.monotonic() + timeout
        while not done(seen):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: condition not met in {timeout}s; saw {len(seen)} records")
            # consume() returns at 500 messages or at its timeout: a short one, so a record that came is
            # seen at once (0.5 s cost every read on a quiet topic half a second).
            for message in self.consumer.consume(500, 0.05):
                if message.error() is None:
                    seen.append(_received(message))
        return seen

    def close(self) -> None:
        self.consumer.close()


def delete_topics(topics: Iterable[str], timeout: float = 10.0) -> None:
    """Delete topics a test created for itself (outbox.topics.delete_topics on the local broker)."""
    outbox_topics.delete_topics(kafka_bootstrap(), topics, timeout)


def delete_group_topics(group: str, topic: str) -> None:
    """A throwaway group's topic and the dead-letter topic its runtime created."""
    delete_topics([topic, dead_letter_topic(group)])
