"""Dead letters per consumer group, read from Kafka: messages in ``<group>.dlq`` and those not yet redriven.

Redrive progress is the committed offset of the group ``<group>.redrive`` on the dead-letter topic
(outbox/dlq.py), so "pending" is what lies past it (past the topic's start when nothing was redriven).
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from outbox.config import kafka_bootstrap

SUFFIX = ".dlq"
TIMEOUT_S = 3.0


@dataclass(frozen=True)
class DeadLetterCount:
    group: str
    total: int
    pending: int


_clients: tuple[AdminClient, Consumer] | None = None


def _kafka() -> tuple[AdminClient, Consumer]:
    global _clients
    if _clients is None:
        bootstrap = kafka_bootstrap()
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "stack-exporter", "enable.auto.commit": False})
        _clients = (AdminClient({"bootstrap.servers": bootstrap}), consumer)
    return _clients


def pending_count(watermarks: dict[int, tuple[int, int]], committed: dict[int, int]) -> tuple[int, int]:
    """(total, pending) over partitions: watermarks {partition: (low, high)}, committed {partition: offset};
    a partition without a commit (negative offset) is pending from its low watermark."""
    total = pending = 0
    for partition, (low, high) in watermarks.items():
        total += high - low
        done = committed.get(partition, -1)
        pending += high - max(low, done if done >= 0 else low)
    return total, pending


def read() -> list[DeadLetterCount]:
    admin, consumer = _kafka()
    topics = admin.list_topics(timeout=TIMEOUT_S).topics
    counts = []
    for topic in sorted(name for name in topics if name.endswith(SUFFIX)):
        group = topic.removesuffix(SUFFIX)
        watermarks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)
            for p in topics[topic].partitions
        }
        counts.append(DeadLetterCount(group, *pending_count(watermarks, _committed(admin, f"{group}.redrive", topic))))
    return counts


def _committed(admin: AdminClient, group: str, topic: str) -> dict[int, int]:
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    try:
        result = future.result(timeout=TIMEOUT_S)
    except Exception:  # the group never committed: nothing redriven yet
        return {}
    return {tp.partition: tp.offset for tp in result.topic_partitions or [] if tp.topic == topic}
