"""Cheaper statistics (issue 11): event_store.event_data gathers none (migrations
*_event_store_payload_statistics), and the big append-mostly tables read by key are analyzed after half
again as many rows instead of a tenth (*_analyze_scale_factor)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.topology import BY_NAME, database_url
from outbox.models import OUTBOX_TABLE

pytestmark = pytest.mark.usefixtures("stack")

# Every service with an outbox.
SERVICES = ("order", "customer", "catalog", "warehouse", "analytics", "payment", "returns", "checkout")
ANALYZED_LESS_OFTEN = {
    "order": (
        "event_store",
        "outbox_aggregate_version",
        "inbox",
        "order_items",
        "order_status_history",
        "data_access_log",
    ),
    "warehouse": ("event_store", "outbox_aggregate_version", "inbox", "reservations", "reservation_items"),
    "customer": ("inbox", "customer_stats"),
    "analytics": ("inbox",),
    "payment": ("inbox",),
    "returns": ("inbox", "order_snapshots"),
    "checkout": ("inbox", "data_access_log"),
}


async def _rows(service: str, sql: str, **params: object) -> list[Row[Any]]:
    engine = create_async_engine(database_url(BY_NAME[service]), poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            return list((await session.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_event_data_has_statistics_target_zero_and_the_other_columns_the_default(service: str) -> None:
    rows = await _rows(
        service,
        "SELECT attname, attstattarget FROM pg_attribute "
        "WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped",
        table=OUTBOX_TABLE,
    )
    targets: dict[str, int] = {row.attname: row.attstattarget for row in rows}
    assert targets.pop("event_data") == 0
    assert targets and set(targets.values()) == {-1}, targets


@pytest.mark.parametrize("service", sorted(ANALYZED_LESS_OFTEN))
async def test_the_big_tables_read_by_key_are_analyzed_after_half_again_as_many_rows(service: str) -> None:
    rows = await _rows(
        service,
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' "
        "AND 'autovacuum_analyze_scale_factor=0.5' = ANY(c.reloptions)",
    )
    assert sorted(str(row.relname) for row in rows) == sorted(ANALYZED_LESS_OFTEN[service])
