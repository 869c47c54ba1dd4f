"""Records no consumer may stop on, produced to a topic the way anyone could: each ends in the group's
dead-letter topic (or is skipped: a type the group does not handle, an event id already applied), the
consumer applies what follows, its committed offsets reach the end of the topic, `dlq list` names each
letter on one line, and a letter redriven after its cause was repaired is applied exactly once.

A consumer process of its own (tests.support.throwaway_group: the stack's consumers run the same runtime):
poison on commerce.* would stay for the topic's retention and be dead-lettered again by every replay.
The decoding rules themselves: tests/unit/test_poison_decoding.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from apps.common.topology import kafka_bootstrap
from outbox import dlq
from outbox.dead_letters import OMITTED, dead_letter_topic
from outbox.events import payload_as_dict
from tests.support.consumers import ThrowawayConsumer
from tests.support.db import connect
from tests.support.kafka import TopicTail
from tests.support.orders import eventually, order_created

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow]

# Just under the broker's 1 MB record limit (message.max.bytes 1,048,588): the record fits its topic, its
# dead letter (the record plus the dlq.* headers) did not fit the producer's.
NEAR_LIMIT = 1_040_000

# As Producer.produce takes them (and dlq's Letter.record gives them back): a list is invariant, so bytes-only
# headers would not pass.
Headers = list[tuple[str, str | bytes | None]]
Record = tuple[bytes | None, bytes | None, Headers]


def _headers(event_id: uuid.UUID | None, event_type: str | None = "order.created", **more: str) -> Headers:
    named = {"id": str(event_id) if event_id else None, "event_type": event_type, "event_version": "1", **more}
    return [(name, value.encode()) for name, value in named.items() if value is not None]


def _payload(customer: str | None = None) -> bytes:
    return json.dumps(payload_as_dict(order_created(customer or str(uuid.uuid4())))).encode()


def _produce(topic: str, records: list[Record]) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap(), "message.max.bytes": 2_000_000})
    refused: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            refused.append(error)

    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
    assert producer.flush(30) == 0 and refused == []


def _lag(group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        lag = 0
        for tp in consumer.committed(partitions, timeout=10):
            high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def _printed(command: Callable[[], object]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        command()
    return out.getvalue()


async def test_poison_records_are_dead_lettered_and_the_consumer_moves_on_to_lag_0() -> None:
    async with ThrowawayConsumer() as consumer:
        letters = TopicTail(dead_letter_topic(consumer.group))
        consumer.start()
        ids = {name: uuid.uuid4() for name in (
            "malformed", "wrong_shape", "old_version", "bad_schema_version", "no_type", "tombstone",
            "version_past_integer", "version_0", "bad_version", "conflicting_ids", "conflicting_types",
            "near_limit", "nan_amount", "nested_deep",
        )}  # fmt: skip
        key = str(uuid.uuid4()).encode()
        dead: list[Record] = [
            (key, b'{"order_id": ', _headers(ids["malformed"])),
            (key, b"[1, 2, 3]", _headers(ids["wrong_shape"])),
            (key, _payload(), _headers(ids["old_version"], schema_version="0")),
            (key, _payload(), _headers(ids["bad_schema_version"], schema_version="abc")),
            (key, _payload(), _headers(ids["no_type"], event_type=None)),
            (key, _payload(), _headers(None)),  # no id: dead-lettered without one
            (key, None, _headers(ids["tombstone"])),
            (key, _payload(), _headers(ids["version_past_integer"], event_version="99999999999")),
            (key, _payload(), _headers(ids["version_0"], event_version="0")),
            (key, _payload(), _headers(ids["bad_version"], event_version="1.5")),
            (key, _payload(), [("id", str(uuid.uuid4()).encode()), *_headers(ids["conflicting_ids"])]),
            (key, _payload(), [*_headers(ids["conflicting_types"]), ("event_type", b"order.exploded")]),
            (key, b'{"order_id": "' + b"x" * NEAR_LIMIT + b'"}', _headers(ids["near_limit"])),
            (
                key,
                _payload().replace(b'"total_amount": "10.00"', b'"total_amount": "NaN"'),
                _headers(ids["nan_amount"]),
            ),
            (key, b'{"junk": ' + b"[" * 1200 + b"]" * 1200 + b", " + _payload()[1:], _headers(ids["nested_deep"])),
        ]
        applied = {name: uuid.uuid4() for name in ("future_version", "no_key", "huge_key", "odd_key")}
        skipped = uuid.uuid4()
        good: list[Record] = [
            (key, _payload(), _headers(applied["future_version"], schema_version="99")),  # read as the newest
            (None, _payload(), _headers(applied["no_key"])),
            (b"k" * 500_000, _payload(), _headers(applied["huge_key"])),
            (b"\xff\x00", _payload(), _headers(applied["odd_key"])),
            (key, _payload(), _headers(skipped, event_type="order.exploded")),  # a type the group does not handle
        ]
        await asyncio.to_thread(_produce, consumer.topic, dead + good)
        after = consumer.produce()

        await eventually(lambda: _applied(consumer, [*applied.values(), after]), within=90, what="later events applied")
        assert consumer.alive
        seen = await asyncio.to_thread(
            letters.read_until, lambda got: set(map(str, ids.values())) <= {r.headers.get("id") for r in got}, 60
        )
        letters.close()
        by_id = {r.headers.get("id"): r for r in seen}
        assert len(seen) == len(dead), [r.headers.get("dlq.error") for r in seen]  # the id-less one too
        reference = by_id[str(ids["near_limit"])]
        assert reference.value == b"" and int(reference.headers[OMITTED]) > NEAR_LIMIT
        assert "conflicting 'id'" in by_id[str(ids["conflicting_ids"])].headers["dlq.error"]
        assert "event_version" in by_id[str(ids["version_past_integer"])].headers["dlq.error"]
        assert await consumer.outcomes([*ids.values(), skipped]) == []  # nothing of them claimed
        await eventually(
            lambda: _lag_is_0(consumer), within=30, what="the group's committed offsets at the end of its topic"
        )

        listing = await asyncio.to_thread(_printed, lambda: dlq.list_dead_letters(consumer.group, pending_only=True))
        lines = listing.splitlines()
        assert len(lines) == len(dead) + 1 and lines[-1].startswith(f"{len(dead)} dead letters")
        for name, event_id in ids.items():
            line = next(line for line in lines if str(event_id) in line)
            assert "pending" in line and len(line) < 400, (name, line)
        assert "left at its origin" in next(line for line in lines if str(ids["near_limit"]) in line)

        # The reference letter's redrive sends the record itself (it fails again: the record is poison).
        tail = TopicTail(consumer.topic)
        assert await asyncio.to_thread(dlq.redrive, consumer.group, {ids["near_limit"]}) == 1
        again = await asyncio.to_thread(
            tail.read_until, lambda got: str(ids["near_limit"]) in {r.headers.get("id") for r in got}
        )
        tail.close()
        assert len(next(r for r in again if r.headers.get("id") == str(ids["near_limit"])).value) > NEAR_LIMIT
        assert consumer.alive


async def test_a_letter_redriven_after_its_cause_was_repaired_applies_once_however_often_it_comes_back() -> None:
    async with ThrowawayConsumer() as consumer:
        consumer.start()
        rejected = consumer.produce("c" * 40)  # the table's customer_id is VARCHAR(36): the database refuses
        await eventually(lambda: _outcome_is(consumer, rejected, "dead_lettered"), within=90, what="dead-lettered")
        conn = await connect("customer")
        try:
            await conn.execute(f'ALTER TABLE "{consumer.table}" ALTER COLUMN customer_id TYPE varchar(64)')
        finally:
            await conn.close()

        assert await asyncio.to_thread(dlq.redrive, consumer.group, {rejected}) == 1
        await eventually(lambda: _outcome_is(consumer, rejected, "applied"), within=60, what="the redrive applied")
        # The letter again, as a second redrive would send it, and the original record again: neither applies.
        letter = next(letter for _, letter in dlq.read(consumer.group, from_start=True) if letter.event_id == rejected)
        key, value, headers = letter.record()
        await asyncio.to_thread(
            _produce,
            consumer.topic,
            [(key, value, [*headers, ("redrive.group", consumer.group.encode())])],
        )
        await asyncio.to_thread(_produce, consumer.topic, [(key, value, headers)])
        after = consumer.produce()
        await eventually(lambda: _applied(consumer, [after]), within=60, what="the event after the repeats")
        assert await consumer.applied([rejected]) == [rejected]
        assert await asyncio.to_thread(_printed, lambda: dlq.list_dead_letters(consumer.group, pending_only=True))
        assert await consumer.outcomes([rejected]) == ["applied"]


async def _applied(consumer: ThrowawayConsumer, event_ids: list[uuid.UUID]) -> bool:
    return sorted(await consumer.applied(event_ids)) == sorted(event_ids)


async def _outcome_is(consumer: ThrowawayConsumer, event_id: uuid.UUID, outcome: str) -> bool:
    return await consumer.outcomes([event_id]) == [outcome]


async def _lag_is_0(consumer: ThrowawayConsumer) -> bool:
    return await asyncio.to_thread(_lag, consumer.group, consumer.topic) == 0
