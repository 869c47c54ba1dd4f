"""Retention deletes old outbox rows, keeps recent ones, and its deletes never reach Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from apps.common.topology import BY_NAME, database_url, topic_for
from outbox import retention
from tests.support.db import connect
from tests.support.kafka import TopicTail

pytestmark = pytest.mark.usefixtures("stack")

INSERT = """
INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version, created_at)
VALUES ($1, $2, 'order', 'order.probed', $3::jsonb, 1, now() - make_interval(days => $4))
"""


async def test_old_outbox_rows_are_deleted_quietly_and_recent_ones_kept() -> None:
    old_aggregate, recent_aggregate = uuid.uuid4(), uuid.uuid4()
    old_id, recent_id, marker_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    tail = TopicTail(topic_for("order"))
    conn = await connect("order")
    try:
        await conn.execute(INSERT, old_id, old_aggregate, json.dumps({"age": "400 days"}), 400)
        await conn.execute(INSERT, recent_id, recent_aggregate, json.dumps({"age": "300 days"}), 300)
        # Both inserts are published (Debezium ignores created_at); wait for them before deleting.
        seen = await asyncio.to_thread(
            tail.read_until, lambda records: {str(old_id), str(recent_id)} <= {r.event_id for r in records}
        )

        engine = create_async_engine(database_url(BY_NAME["order"]))
        try:
            counts = await retention.purge(engine, outbox_days=365)
        finally:
            await engine.dispose()
        assert counts["event_store"] >= 1
        remaining = await conn.fetch("SELECT id FROM event_store WHERE id = ANY($1)", [old_id, recent_id])
        assert {r["id"] for r in remaining} == {recent_id}

        await conn.execute(INSERT, marker_id, uuid.uuid4(), json.dumps({"marker": True}), 0)
    finally:
        await conn.close()
    seen += await asyncio.to_thread(tail.read_until, lambda records: str(marker_id) in {r.event_id for r in records})
    tail.close()
    about_old = [r for r in seen if r.key == str(old_aggregate)]
    assert len(about_old) == 1 and about_old[0].value, "the delete reached Kafka"


def test_inbox_rows_must_outlive_the_topics() -> None:
    with pytest.raises(SystemExit):
        retention.main(["--database-url", "postgresql+asyncpg://x/y", "--inbox-days", "30"])
