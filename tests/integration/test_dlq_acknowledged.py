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
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap
from outbox import dlq, replay
from outbox.dead_letters import REDRIVE_HEADER
from tests.support.consumers import ThrowawayConsumer
from tests.support.db import fetch
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

        assert await asyncio.to_thread(dlq.acknowledge, consumer.group, None, None, database_url=url) == 2
        assert sorted(await consumer.outcomes([undecodable, rejected, good])) == [
            "acknowledged",
            "acknowledged",
            "applied",
        ]

        # The replay runbook: stop, rebuild from the earliest offsets, start.
        assert await consumer.terminate() == 0
        await _wait_without_members(consumer.group)
        plans = await asyncio.to_thread(
            replay.plan, consumer.group, [consumer.topic], to_earliest=True, to_datetime=None, to_offset=None,
            bootstrap=kafka_bootstrap(),
        )  # fmt: skip
        await replay.rebuild(
            consumer.group, url, (consumer.table,), lambda: replay.reset(consumer.group, plans, kafka_bootstrap())
        )
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
        await asyncio.to_thread(dlq.acknowledge, consumer.group, None, None, database_url=url)
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

        assert await asyncio.to_thread(dlq.record_done, consumer.group, database_url=url) == 1
        assert await consumer.outcomes([undecodable]) == ["acknowledged"]
        produce_raw(consumer.topic, key="k", event_type="order.created", payload=b"{not json", event_id=undecodable)
        marker = consumer.produce()

        async def past_the_marker() -> bool:
            return await consumer.applied([marker]) == [marker]

        await eventually(past_the_marker, within=90, what="the marker applied")
        assert await _letters(consumer.group) == [(str(undecodable), "done")]
