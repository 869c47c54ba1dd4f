"""The outbox table of each service database reaches Kafka through its own Debezium connector.

These tests write rows with raw SQL and a probe event type that no consumer handles, so they exercise
Debezium and the EventRouter alone.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from apps.common.topology import connect_url, topic_for
from infra import connectors, kafka, proc
from tests.support.db import connect
from tests.support.kafka import Received, TopicTail

pytestmark = pytest.mark.usefixtures("stack")

INSERT = """
INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
"""


async def insert_event(conn: Any, aggregate_type: str, event_type: str, payload: dict[str, Any]) -> uuid.UUID:
    event_id = uuid.uuid4()
    await conn.execute(INSERT, event_id, uuid.uuid4(), aggregate_type, event_type, json.dumps(payload), 1)
    return event_id


def arrived(ids: set[str]) -> Any:
    return lambda seen: ids <= {record.event_id for record in seen}


@pytest.mark.parametrize(
    ("service", "aggregate_type", "event_type"),
    [("order", "order", "order.probed"), ("customer", "customer", "customer.probed")],
)
async def test_committed_outbox_row_arrives_on_its_aggregate_topic(
    service: str, aggregate_type: str, event_type: str
) -> None:
    tail = TopicTail(topic_for(aggregate_type))
    conn = await connect(service)
    aggregate_id = uuid.uuid4()
    event_id = uuid.uuid4()
    # a null stays a null: the JSONB text is passed through, not re-encoded (which dropped null fields)
    payload = {"total": "129.90", "items": [{"sku": "SKU-1", "quantity": 2}], "note": "ünïcode ✓", "gift": None}
    try:
        async with conn.transaction():
            await conn.execute(INSERT, event_id, aggregate_id, aggregate_type, event_type, json.dumps(payload), 7)
    finally:
        await conn.close()

    seen = await asyncio.to_thread(tail.read_until, arrived({str(event_id)}))
    tail.close()
    record = next(r for r in seen if r.event_id == str(event_id))
    assert record.topic == f"commerce.{aggregate_type}"
    assert record.key == str(aggregate_id)
    assert record.headers["event_type"] == event_type
    assert record.headers["event_version"] == "7"
    assert record.headers["aggregate_type"] == aggregate_type
    # The JSONB payload arrives as plain JSON, not as a JSON string inside JSON.
    assert json.loads(record.value) == payload


async def test_rolled_back_outbox_row_never_reaches_kafka() -> None:
    tail = TopicTail(topic_for("order"))
    conn = await connect("order")
    try:
        transaction = conn.transaction()
        await transaction.start()
        rolled_back = await insert_event(conn, "order", "order.probed", {"state": "rolled back"})
        await transaction.rollback()
        # A later committed marker proves the stream moved past the point where the row would be.
        async with conn.transaction():
            marker = await insert_event(conn, "order", "order.probed", {"state": "marker"})
    finally:
        await conn.close()

    seen = await asyncio.to_thread(tail.read_until, arrived({str(marker)}))
    tail.close()
    assert str(rolled_back) not in {record.event_id for record in seen}


@pytest.mark.slow
async def test_connect_crash_while_writing_loses_no_row(capsys: pytest.CaptureFixture[str]) -> None:
    tail = TopicTail(topic_for("order"))
    conn = await connect("order")
    written: list[str] = []

    async def write(rows: int) -> None:
        for i in range(rows):
            async with conn.transaction():
                written.append(str(await insert_event(conn, "order", "order.probed", {"n": i})))
            await asyncio.sleep(0.005)

    try:
        await write(100)
        writer = asyncio.create_task(write(400))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(proc.kill, kafka.CONNECT)  # a crash, not a clean shutdown
        await asyncio.sleep(1.0)
        await asyncio.to_thread(kafka.start_connect)
        await writer
        await write(100)
        await asyncio.to_thread(connectors.wait_running, [f"{s}-outbox" for s in ("order",)], connect_url(), 120)
    finally:
        await conn.close()

    seen: list[Received] = await asyncio.to_thread(tail.read_until, arrived(set(written)), 180)
    tail.close()
    counts = Counter(record.event_id for record in seen if record.event_id in set(written))
    duplicates = sum(n - 1 for n in counts.values())
    with capsys.disabled():
        print(f"\nconnect crash: {len(written)} rows written, all delivered, {duplicates} duplicates")
    assert set(counts) == set(written)
