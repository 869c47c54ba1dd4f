"""KafkaSide commits offsets of the partitions it owns only (W, session 32).

The broker takes an offset commit from any member of the group's generation, whoever owns the partition:
an offset kept after its partition was revoked, and sent again with the others (every commit_due, the
close), moved the next owner's committed offset back (reproduced on a scratch topic: 15 -> 10;
tests/integration/test_review_offset_rewind.py is the live case). These drive the rebalance callbacks the
way librdkafka calls them, with a consumer that records what it is asked to commit.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from outbox import kafka_client
from outbox.kafka_client import KafkaSide

TOPIC = "commerce.order"


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[int, int]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append({tp.partition: tp.offset for tp in offsets})

    def close(self) -> None:
        pass


def side(monkeypatch: pytest.MonkeyPatch) -> tuple[KafkaSide, RecordingConsumer]:
    monkeypatch.setattr(kafka_client, "COMMIT_INTERVAL_S", 0.0)  # every commit_due() sends: which offsets is the point
    kafka = KafkaSide("review-offsets", [TOPIC], "127.0.0.1:1")
    consumer = RecordingConsumer()
    kafka._consumer = consumer  # type: ignore[assignment]
    kafka._assigned(consumer, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])  # type: ignore[arg-type]
    return kafka, consumer


def commit_now(kafka: KafkaSide, offsets: dict[tuple[str, int], int]) -> None:
    """A batch applied, then the polling thread's next turn sends its offsets (COMMIT_INTERVAL_S is 0 here)."""
    kafka.commit(offsets)
    kafka.commit_due()


def tps(*partitions: int) -> Any:
    return [TopicPartition(TOPIC, p) for p in partitions]


def test_a_revoked_partition_is_committed_once_at_revocation_and_never_again(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka, consumer = side(monkeypatch)
    commit_now(kafka, {(TOPIC, 0): 10, (TOPIC, 1): 10})
    kafka._revoked(consumer, tps(0))  # type: ignore[arg-type]
    assert consumer.commits[-1] == {0: 10}  # the next owner starts after what this member applied
    commit_now(kafka, {(TOPIC, 1): 11})  # another member has partition 0 now, and moves it past 10
    assert consumer.commits[-1] == {1: 11}
    kafka.close()
    assert consumer.commits[-1] == {1: 11}
    assert all(0 not in sent for sent in consumer.commits[2:])  # after the first commit and the revocation's


def test_a_batch_applied_while_its_partition_was_revoked_records_nothing_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka, consumer = side(monkeypatch)
    commit_now(kafka, {(TOPIC, 0): 10, (TOPIC, 1): 10})
    kafka._revoked(consumer, tps(0))  # type: ignore[arg-type]  # in the prefetch thread, mid-batch
    commit_now(kafka, {(TOPIC, 0): 15, (TOPIC, 1): 12})  # the batch in flight ends after it
    assert consumer.commits[-1] == {1: 12}
    kafka._assigned(consumer, tps(0))  # type: ignore[arg-type]  # back to this member later: from the committed one
    commit_now(kafka, {(TOPIC, 1): 13})
    assert consumer.commits[-1] == {1: 13}


def test_a_lost_partition_is_neither_committed_nor_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka, consumer = side(monkeypatch)
    commit_now(kafka, {(TOPIC, 0): 10, (TOPIC, 1): 10})
    sent = len(consumer.commits)
    kafka._lost(consumer, tps(0))  # type: ignore[arg-type]
    assert len(consumer.commits) == sent
    commit_now(kafka, {(TOPIC, 1): 11})
    assert consumer.commits[-1] == {1: 11}


def test_nothing_is_sent_once_every_partition_with_an_offset_was_revoked(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka, consumer = side(monkeypatch)
    commit_now(kafka, {(TOPIC, 0): 10})
    kafka._revoked(consumer, tps(0, 1))  # type: ignore[arg-type]
    sent = len(consumer.commits)
    commit_now(kafka, {(TOPIC, 0): 12})
    assert len(consumer.commits) == sent  # not an empty commit (librdkafka refuses one)
