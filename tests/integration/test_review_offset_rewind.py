"""A member never moves back the committed offset of a partition revoked from it (W, session 32).

Two members of a group of their own (the runtime's KafkaSide) on a scratch topic of two partitions: A
applies both, B joins and takes one (cooperative-sticky), applies five more records of it and commits.
Then A commits again for its own partition, or closes: before, A sent the revoked partition's old offset
with its own (the broker takes it from any member of the generation), and the group's committed offset
went back from 15 to 10. Pure cases: tests/unit/test_review_offsets.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from apps.common.topology import kafka_bootstrap
from outbox import kafka_client
from outbox.dead_letters import dead_letter_topic
from outbox.kafka_client import KafkaSide
from outbox.topics import delete_topics, ensure_topics

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow]


class Scratch:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.topic, self.group = f"review.rewind.{tag}", f"review-rewind-{tag}"
        self.producer = Producer({"bootstrap.servers": kafka_bootstrap()})

    def produce(self, partition: int, n: int) -> None:
        for _ in range(n):
            self.producer.produce(self.topic, value=b"{}", partition=partition)
        assert self.producer.flush(10) == 0

    def committed(self) -> dict[int, int]:
        reader = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": self.group, "enable.auto.commit": False})
        try:  # asks the group's coordinator; never joins the group
            found = reader.committed([TopicPartition(self.topic, p) for p in (0, 1)], timeout=10)
        finally:
            reader.close()
        return {tp.partition: tp.offset for tp in found}


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    made = Scratch()
    ensure_topics(kafka_bootstrap(), [made.topic], partitions=2)
    try:
        yield made
    finally:
        delete_topics(kafka_bootstrap(), [made.topic, dead_letter_topic(made.group)])


def read(member: KafkaSide, seconds: float) -> list[Message]:
    got: list[Message] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        got += member.fetch(100, 0.2)
    return got


def applied(member: KafkaSide, messages: list[Message]) -> None:
    """As the runtime does once a batch's transaction committed: its next offsets, then a commit (sent at once
    here, COMMIT_INTERVAL_S being 0, and synchronously, so the group's offsets say it when read)."""
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic() or "", m.partition() or 0)
        offsets[key] = max(offsets.get(key, 0), (m.offset() or 0) + 1)
    member.commit(offsets)
    listed = member._offset_list()
    if listed:
        member.consumer.commit(offsets=listed, asynchronous=False)


@pytest.mark.parametrize("then", ["commits", "closes"])
def test_the_member_a_partition_was_revoked_from_leaves_its_offset_alone(
    scratch: Scratch, then: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_client, "COMMIT_INTERVAL_S", 0.0)
    a = KafkaSide(scratch.group, [scratch.topic], kafka_bootstrap())
    b = KafkaSide(scratch.group, [scratch.topic], kafka_bootstrap())
    try:
        scratch.produce(0, 10)
        scratch.produce(1, 10)
        a.open()
        first = read(a, 1.0)
        until = time.monotonic() + 30
        while len(first) < 20 and time.monotonic() < until:
            first += read(a, 0.5)
        assert len(first) == 20
        applied(a, first)
        assert scratch.committed() == {0: 10, 1: 10}

        b.open()
        until = time.monotonic() + 40
        while not b.owned and time.monotonic() < until:  # A polls too: it must give a partition up
            read(a, 0.3)
            assert not b.fetch(100, 0.3)  # nothing new yet
        assert len(b.owned) == 1, "B was never given a partition"
        (_, moved), kept = next(iter(b.owned)), 1 - next(iter(b.owned))[1]

        scratch.produce(moved, 5)
        taken: list[Message] = []
        until = time.monotonic() + 30
        while len(taken) < 5 and time.monotonic() < until:
            taken += b.fetch(100, 0.3)
            read(a, 0.1)
        assert len(taken) == 5
        applied(b, taken)
        assert scratch.committed()[moved] == 15

        if then == "commits":  # A applies a record of the partition it kept
            scratch.produce(kept, 1)
            mine: list[Message] = []
            until = time.monotonic() + 30
            while not mine and time.monotonic() < until:
                mine += read(a, 0.3)
            applied(a, mine)
            assert scratch.committed() == {moved: 15, kept: 11}
        else:
            a.close()
            a._consumer = None
            assert scratch.committed()[moved] == 15
    finally:
        for member in (b, a):
            if member._consumer is not None:
                member.close()
