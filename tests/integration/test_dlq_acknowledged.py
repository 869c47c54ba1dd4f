"""A replay does not page anyone for poison already acknowledged.

customer-stats had 23 letters pending after a day's replays (session 30), the same records dead-lettered
again by every replay (one of them 37 times), though each had been read and acknowledged (`just dlq ack`).
`ack` now records the letters' events as acknowledged in the group's inbox (outbox.inbox.ACKNOWLEDGED), a
rebuild keeps those rows, and a record read again is skipped (one its handler rejected: the claim finds the
row) or marked seen (one that does not decode: processed_at, and the consumer's
outbox_consumer_events_total{outcome="acknowledged_again"}), with no new letter.

A throwaway consumer process of its own (tests.support.throwaway_group): its group, topic and table.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap
from outbox import dlq, replay
from outbox.dead_letters import REDRIVE_HEADER
from tests.support.consumers import ThrowawayConsumer
from tests.support.db import connect, fetch
from tests.support.orders import eventually, produce_raw

pytestmark = pytest.mark.usefixtures("stack")

TOO_LONG = "c" * 40  # the throwaway table's customer_id is varchar(36): the handler's insert is rejected


async def _letters(group: str) -> list[tuple[str, str]]:
    """Every letter of the group's dead-letter topic: (event id, pending or done)."""

    def read() -> list[tuple[str, str]]:
        done = dlq.redriven_up_to(group)
        return [
            (
                letter.headers.get("id", "?"),
                "pending" if (letter.message.offset() or 0) >= done.get(letter.message.partition() or 0, 0) else "done",
            )
            for _, letter in dlq.read(group, from_start=True)
        ]

    return await asyncio.to_thread(read)


async def _read_past_the_end(consumer: ThrowawayConsumer) -> None:
    """Until the group's committed offset reaches what its topic holds now: `ack` records only events
    whose record the group has read since its offsets last moved back, and the runtime commits offsets
    at most every 5 s (outbox.kafka_client.COMMIT_INTERVAL_S)."""

    def committed_and_end() -> tuple[int, int]:
        client = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": consumer.group})
        try:
            [tp] = client.committed([TopicPartition(consumer.topic, 0)], timeout=10)
            return tp.offset, client.get_watermark_offsets(TopicPartition(consumer.topic, 0), timeout=10)[1]
        finally:
            client.close()

    deadline = time.monotonic() + 30
    while (position := await asyncio.to_thread(committed_and_end))[0] < position[1]:
        assert time.monotonic() < deadline, f"the group's committed offset stays behind: {position}"
        await asyncio.sleep(0.5)


async def _stop_and_rebuild(consumer: ThrowawayConsumer, url: str) -> None:
    """The replay runbook's first half: stop the consumer, then rebuild from the earliest offsets."""
    assert await consumer.terminate() == 0
    await _wait_without_members(consumer.group)
    plans = await asyncio.to_thread(
        replay.plan, consumer.group, [consumer.topic], to_earliest=True, to_datetime=None, to_offset=None,
        bootstrap=kafka_bootstrap(),
    )  # fmt: skip
    await replay.rebuild(
        consumer.group, url, (consumer.table,), lambda: replay.reset(consumer.group, plans, kafka_bootstrap())
    )


async def _wait_without_members(group: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap()})
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(replay.live_members, admin, group):
        assert time.monotonic() < deadline, "the stopped consumer is still a member"
        await asyncio.sleep(0.5)


async def test_a_rebuild_reads_acknowledged_poison_again_without_a_new_letter() -> None:
    url = database_url(BY_NAME["customer"])
    async with ThrowawayConsumer() as consumer:
        consumer.start()
        undecodable = produce_raw(consumer.topic, key="k", event_type="order.created", payload=b"{not json")
        rejected = consumer.produce(TOO_LONG)
        good = consumer.produce()

        async def both_dead_lettered() -> bool:
            return len(await _letters(consumer.group)) == 2 and await consumer.applied([good]) == [good]

        await eventually(both_dead_lettered, within=90, what="two letters and one event applied")
        assert sorted(await _letters(consumer.group)) == sorted(
            [(str(undecodable), "pending"), (str(rejected), "pending")]
        )

        await _read_past_the_end(consumer)
        assert await asyncio.to_thread(dlq.acknowledge, consumer.group, None, None, database_url=url) == 2
        assert sorted(await consumer.outcomes([undecodable, rejected, good])) == [
            "acknowledged",
            "acknowledged",
            "applied",
        ]

        # The replay runbook: stop, rebuild from the earliest offsets, start.
        await _stop_and_rebuild(consumer, url)
        assert sorted(await consumer.outcomes([undecodable, rejected, good])) == ["acknowledged", "acknowledged"]
        assert await consumer.applied([good]) == []
        (before,) = await fetch(
            "customer", "SELECT processed_at FROM inbox WHERE consumer_group = $1 AND event_id = $2",
            consumer.group, undecodable,
        )  # fmt: skip

        consumer.start()
        marker = consumer.produce()

        async def replayed() -> bool:
            return sorted(await consumer.applied([good, marker])) == sorted([good, marker])

        await eventually(replayed, within=90, what="the replay past the marker")
        # The same two letters, both done: nothing new pending, no alert.
        assert sorted(await _letters(consumer.group)) == sorted([(str(undecodable), "done"), (str(rejected), "done")])
        (after,) = await fetch(
            "customer", "SELECT outcome, processed_at FROM inbox WHERE consumer_group = $1 AND event_id = $2",
            consumer.group, undecodable,
        )  # fmt: skip
        assert after["outcome"] == "acknowledged"
        assert after["processed_at"] > before["processed_at"], "the record read again is not marked seen"


async def test_a_redriven_record_that_fails_again_is_dead_lettered_again() -> None:
    """Redriving is asking to see it apply: an acknowledged event sent back by hand that still fails gets a
    letter, as before."""
    url = database_url(BY_NAME["customer"])
    async with ThrowawayConsumer() as consumer:
        consumer.start()
        undecodable = produce_raw(consumer.topic, key="k", event_type="order.created", payload=b"{not json")
        await eventually(lambda: _count(consumer.group, 1), within=90, what="the first letter")
        await _read_past_the_end(consumer)
        await asyncio.to_thread(dlq.acknowledge, consumer.group, None, None, database_url=url)
        assert await consumer.outcomes([undecodable]) == ["acknowledged"]
        await asyncio.to_thread(_redrive, consumer.topic, consumer.group, undecodable)
        await eventually(lambda: _count(consumer.group, 2), within=90, what="a letter for the redriven record")
        assert (await _letters(consumer.group))[-1] == (str(undecodable), "pending")


async def _count(group: str, wanted: int) -> bool:
    return len(await _letters(group)) == wanted


def _redrive(topic: str, group: str, event_id: uuid.UUID) -> None:
    """A redrive as `just dlq redrive` sends a letter back: the original record plus the redrive header."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap()})
    headers: list[tuple[str, str | bytes | None]] = [
        ("id", str(event_id).encode()),
        ("event_type", b"order.created"),
        ("event_version", b"1"),
        ("schema_version", b"1"),
        (REDRIVE_HEADER, group.encode()),
    ]
    producer.produce(topic, key=b"k", value=b"{not json", headers=headers)
    assert producer.flush(10) == 0


async def test_letters_acknowledged_before_it_was_recorded_can_be_recorded_afterwards() -> None:
    """`just dlq ack GROUP --done`: the letters already done (acknowledged before session 31 recorded it)."""
    url = database_url(BY_NAME["customer"])
    async with ThrowawayConsumer() as consumer:
        consumer.start()
        undecodable = produce_raw(consumer.topic, key="k", event_type="order.created", payload=b"{not json")
        await eventually(lambda: _count(consumer.group, 1), within=90, what="the first letter")
        # As an ack did before: the progress moves, the inbox learns nothing (no database for this group).
        assert await asyncio.to_thread(dlq.acknowledge, consumer.group) == 1
        assert await consumer.outcomes([undecodable]) == []

        await _read_past_the_end(consumer)
        assert await asyncio.to_thread(dlq.record_done, consumer.group, database_url=url) == 1
        assert await consumer.outcomes([undecodable]) == ["acknowledged"]
        produce_raw(consumer.topic, key="k", event_type="order.created", payload=b"{not json", event_id=undecodable)
        marker = consumer.produce()

        async def past_the_marker() -> bool:
            return await consumer.applied([marker]) == [marker]

        await eventually(past_the_marker, within=90, what="the marker applied")
        assert await _letters(consumer.group) == [(str(undecodable), "done")]


async def test_done_letters_recorded_in_the_middle_of_a_replay_are_left_to_the_re_read() -> None:
    """`just dlq ack GROUP --done` between a rebuild and its re-read (W, session 31): the rebuild forgot what
    the group applied and moved its offsets back, so an event whose letter is done and which applies now
    (its handler's table was fixed since) has no inbox row; recording it acknowledged then made the re-read
    skip it for good. Now only events the group has read since its reset are recorded: this one is left
    for the re-read, which applies it."""
    url = database_url(BY_NAME["customer"])
    async with ThrowawayConsumer() as consumer:
        consumer.start()
        rejected = consumer.produce(TOO_LONG)
        good = consumer.produce()

        async def lettered() -> bool:
            return await _count(consumer.group, 1) and await consumer.applied([good]) == [good]

        await eventually(lettered, within=90, what="one letter and one event applied")
        # As an ack did before session 31: the letter is done, the inbox learns nothing (no database named).
        assert await asyncio.to_thread(dlq.acknowledge, consumer.group) == 1
        assert await consumer.outcomes([rejected]) == ["dead_lettered"]
        # The fix: the table takes such a customer id now.
        conn = await connect("customer")
        try:
            await conn.execute(f'ALTER TABLE "{consumer.table}" ALTER COLUMN customer_id TYPE varchar(64)')
        finally:
            await conn.close()

        # The replay runbook: stop, rebuild from the earliest offsets; the consumer not started yet.
        await _stop_and_rebuild(consumer, url)
        assert await consumer.outcomes([rejected, good]) == []

        assert await asyncio.to_thread(dlq.record_done, consumer.group, database_url=url) == 0
        assert await consumer.outcomes([rejected]) == []

        consumer.start()
        marker = consumer.produce()

        async def replayed() -> bool:
            return sorted(await consumer.applied([rejected, good, marker])) == sorted([rejected, good, marker])

        await eventually(replayed, within=90, what="the re-read applying the fixed event and the marker")
        # Read again and caught up: recorded as read, and an applied event stays applied.
        await _read_past_the_end(consumer)
        assert await asyncio.to_thread(dlq.record_done, consumer.group, database_url=url) == 1
        assert await consumer.outcomes([rejected]) == ["applied"]
