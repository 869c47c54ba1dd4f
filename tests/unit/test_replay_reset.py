"""outbox.replay's offset reset: a partition Kafka refuses, or an offset that did not move, stops the replay
before the projection is emptied (session 29: a refused reset went unnoticed after a broker restart, the
rebuild emptied customer_stats, and the group restarted past every event: the projection stayed empty)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from outbox import replay
from outbox.replay import PartitionPlan, ResetRefused

GROUP = "customer-stats"
PLANS = [PartitionPlan("commerce.order", p, current=500, target=0, end=900) for p in range(3)]


class FakeAdmin:
    """Answers an offset change with ``refuse`` partitions in error, and a read-back with ``held`` offsets."""

    def __init__(self, *, refuse: frozenset[int] = frozenset(), held: dict[int, int] | None = None) -> None:
        self.refuse = refuse
        self.held = held
        self.altered: list[TopicPartition] = []

    def alter_consumer_group_offsets(self, requests: list[ConsumerGroupTopicPartitions]) -> dict[str, Future[Any]]:
        (request,) = requests
        assert request.topic_partitions is not None  # replay always names the partitions it resets
        self.altered += request.topic_partitions
        # librdkafka's answer carries each partition's own error (TopicPartition.error is read-only here)
        answered = [
            SimpleNamespace(
                topic=tp.topic,
                partition=tp.partition,
                offset=tp.offset,
                error=KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS) if tp.partition in self.refuse else None,
            )
            for tp in request.topic_partitions
        ]
        return {request.group_id: _done(SimpleNamespace(group_id=request.group_id, topic_partitions=answered))}

    # No list_consumer_group_offsets: the replay must not call it (FakeConsumer, committed_offsets).


class FakeConsumer:
    """A consumer of the group that never joins it: ``committed`` reads back what the admin moved (or
    ``held``), or raises what Kafka answered."""

    def __init__(self, admin: FakeAdmin, error: KafkaException | None = None) -> None:
        self.admin = admin
        self.error = error
        self.closed = False

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.error is not None:
            raise self.error
        held = {tp.partition: tp.offset for tp in self.admin.altered} | (self.admin.held or {})
        return [TopicPartition(tp.topic, tp.partition, held[tp.partition]) for tp in partitions]

    def close(self) -> None:
        self.closed = True


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def _admin(monkeypatch: pytest.MonkeyPatch, admin: FakeAdmin, read_error: KafkaException | None = None) -> FakeConsumer:
    consumer = FakeConsumer(admin, read_error)
    monkeypatch.setattr(replay, "AdminClient", lambda _config: admin)
    monkeypatch.setattr(replay, "Consumer", lambda _config: consumer)
    return consumer


def test_a_reset_kafka_accepts_and_reads_back_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = FakeAdmin()
    _admin(monkeypatch, admin)
    replay.reset(GROUP, PLANS, "kafka:9092")
    assert [(tp.partition, tp.offset) for tp in admin.altered] == [(0, 0), (1, 0), (2, 0)]


def test_a_group_whose_coordinator_failed_is_an_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A __consumer_offsets partition Kafka 4.3.0 left FAILED after an unclean restart (a commit during its load
    race) answers NOT_COORDINATOR until the broker restarts, and AdminClient.list_consumer_group_offsets for a
    group there SIGSEGVed the process (confluent-kafka 2.16.1, scratch broker, 2026-11-28: rc 139; describe and
    alter answered the error, Consumer.committed raised it). The replay reads offsets with a consumer of the
    group: FakeAdmin has no list_consumer_group_offsets, so the old read-back failed here (AttributeError)."""
    consumer = _admin(monkeypatch, FakeAdmin(), read_error=KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)))
    with pytest.raises(KafkaException, match="NOT_COORDINATOR"):
        replay.reset(GROUP, PLANS, "kafka:9092")
    assert consumer.closed
    _admin(monkeypatch, FakeAdmin())
    replay.reset(GROUP, PLANS, "kafka:9092")


def test_a_partition_kafka_refused_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _admin(monkeypatch, FakeAdmin(refuse=frozenset({1})))
    with pytest.raises(ResetRefused, match=r"commerce\.order\[1\]"):
        replay.reset(GROUP, PLANS, "kafka:9092")


def test_an_offset_read_back_elsewhere_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _admin(monkeypatch, FakeAdmin(held={2: 500}))
    with pytest.raises(ResetRefused, match=r"commerce\.order\[2\] at 500, not 0"):
        replay.reset(GROUP, PLANS, "kafka:9092")


def test_a_refused_reset_empties_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _admin(monkeypatch, FakeAdmin(refuse=frozenset({0})))
    emptied: list[str] = []

    async def rebuild(group: str, _url: str, _tables: tuple[str, ...], reset_offsets: Callable[[], None]) -> None:
        # As the real one: the reset is the last step of the emptying transaction, which it rolls back.
        reset_offsets()
        emptied.append(group)

    monkeypatch.setattr(replay, "plan", lambda *_a, **_k: PLANS)
    monkeypatch.setattr(replay, "live_members", lambda *_a: 0)
    monkeypatch.setattr(replay, "rebuild", rebuild)
    assert replay.main([GROUP, "--to-earliest", "--rebuild", "--bootstrap", "kafka:9092"]) == 1
    assert emptied == []
    _admin(monkeypatch, FakeAdmin())
    assert replay.main([GROUP, "--to-earliest", "--rebuild", "--bootstrap", "kafka:9092"]) == 0
    assert emptied == [GROUP]
