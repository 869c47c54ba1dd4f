"""A consumer while its group's coordinator does not answer (session 34, E; docs/decisions.md, "Consumers while
their group's coordinator is away").

Measured on a scratch cluster whose __consumer_offsets lived on a broker of its own, stopped for 30-120 s: the
member's session is lost after 6 s and librdkafka rejoins by itself once the coordinator answers, but /ready
said only `"partitions": 0`, and a close (a stop, or the stranded member's start over) waited for the
coordinator for as long as it did not answer: a stop 3 s into the outage returned only when it came back.
These drive KafkaSide's rebalance callbacks the way librdkafka calls them, with consumers that record or hang.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from outbox import kafka_client
from outbox.consumer import ConsumerGroup
from outbox.kafka_client import KafkaSide
from outbox.runtime import ConsumerRuntime

TOPIC = "commerce.order"


class HangingConsumer:
    """A consumer whose coordinator does not answer: a synchronous commit and the close wait until ``answer``."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.closed = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if not asynchronous:
            self.answer.wait()

    def close(self) -> None:
        self.answer.wait()
        self.closed = True


def tps(*partitions: int) -> Any:
    return [TopicPartition(TOPIC, p) for p in partitions]


def partitions_gauge(group: str) -> float | None:
    return REGISTRY.get_sample_value("outbox_consumer_partitions", {"group": group})


def runtime_on(kafka: KafkaSide) -> ConsumerRuntime:
    never_used = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # connects on first use only
    runtime = ConsumerRuntime(ConsumerGroup(kafka.group, topic_override=[TOPIC]), async_sessionmaker(never_used))
    runtime.kafka = kafka
    runtime.database_ok = True
    return runtime


def test_ready_names_a_lost_session_and_the_gauge_counts_partitions() -> None:
    kafka = KafkaSide("coordinator-away-ready", [TOPIC], "127.0.0.1:1")
    consumer = HangingConsumer()
    kafka._consumer = consumer  # type: ignore[assignment]
    runtime = runtime_on(kafka)
    kafka._assigned(consumer, tps(0, 1, 2))  # type: ignore[arg-type]
    ready, body = runtime.readiness()
    assert ready and "waiting_for" not in body, body
    before = time.time()
    kafka._lost(consumer, tps(0, 1, 2))  # type: ignore[arg-type]  # the session timed out
    ready, body = runtime.readiness()
    assert not ready and body["partitions"] == 0 and body["database"] is True, body
    assert body.get("waiting_for") == "kafka" and body["error"] == kafka_client.SESSION_LOST, body
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(before))) <= str(body["since"]), body
    kafka._assigned(consumer, tps(0, 1, 2))  # type: ignore[arg-type]  # the coordinator answers again
    ready, body = runtime.readiness()
    assert ready and "waiting_for" not in body, body


def test_the_partitions_gauge_follows_assignments() -> None:
    kafka = KafkaSide("coordinator-away-gauge", [TOPIC], "127.0.0.1:1")
    consumer = HangingConsumer()
    kafka._consumer = consumer  # type: ignore[assignment]
    kafka._assigned(consumer, tps(0, 1, 2))  # type: ignore[arg-type]
    assert partitions_gauge(kafka.group) == 3
    kafka._revoked(consumer, tps(2))  # type: ignore[arg-type]
    assert partitions_gauge(kafka.group) == 2
    kafka._lost(consumer, tps(0, 1))  # type: ignore[arg-type]
    assert partitions_gauge(kafka.group) == 0  # what ConsumerWithoutPartitions alerts on


def test_a_member_that_another_owns_every_partition_for_is_not_named_waiting() -> None:
    kafka = KafkaSide("coordinator-away-spare", [TOPIC], "127.0.0.1:1")
    consumer = HangingConsumer()
    kafka._consumer = consumer  # type: ignore[assignment]
    kafka.unassigned = ("joining the group: no partition assigned yet", time.time())
    kafka._assigned(consumer, [])  # type: ignore[arg-type]  # joined; the group's other member has them all
    ready, body = runtime_on(kafka).readiness()
    assert not ready and body["partitions"] == 0 and "waiting_for" not in body, body


def test_a_close_the_coordinator_does_not_answer_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_client, "CLOSE_WITHIN_S", 1.0)
    kafka = KafkaSide("coordinator-away-close", [TOPIC], "127.0.0.1:1")
    old = HangingConsumer()
    kafka._consumer = old  # type: ignore[assignment]
    kafka._assigned(old, tps(0, 1))  # type: ignore[arg-type]
    kafka.commit({(TOPIC, 0): 10})  # applied, not committed yet: the close commits it synchronously
    left = threading.Thread(target=kafka.leave, daemon=True)  # a stranded member starting over (or a stop)
    started = time.monotonic()
    left.start()
    left.join(timeout=5)
    assert not left.is_alive(), "the close waited for a coordinator that does not answer"
    assert 0.9 <= time.monotonic() - started < 5
    assert kafka.owned == set() and partitions_gauge(kafka.group) == 0
    new = HangingConsumer()
    kafka._consumer = new  # type: ignore[assignment]  # open(): a new member
    kafka._assigned(new, tps(0, 1))  # type: ignore[arg-type]
    old.answer.set()  # the coordinator answers: the old consumer finishes its close, and librdkafka says so
    kafka._lost(old, tps(0, 1))  # type: ignore[arg-type]
    kafka._revoked(old, tps(0, 1))  # type: ignore[arg-type]
    assert kafka.owned == {(TOPIC, 0), (TOPIC, 1)}, "the old consumer's callbacks take nothing from the new one"
    assert kafka.unassigned is None


def test_a_close_kafka_answers_is_waited_for() -> None:
    kafka = KafkaSide("coordinator-away-answered", [TOPIC], "127.0.0.1:1")
    consumer = HangingConsumer()
    consumer.answer.set()
    kafka._consumer = consumer  # type: ignore[assignment]
    kafka.close()
    assert consumer.closed
