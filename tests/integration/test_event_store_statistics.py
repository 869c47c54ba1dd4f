"""event_store.event_data gathers no planner statistics (issue 11, migrations *_event_store_payload_statistics):
ANALYZE skips the payload, every other column keeps the default target."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.topology import BY_NAME, database_url
from outbox.models import OUTBOX_TABLE

pytestmark = pytest.mark.usefixtures("stack")

# The services whose migrations have it so far (payment, returns and checkout: not yet).
SERVICES = ("order", "customer", "catalog", "warehouse", "analytics")


@pytest.mark.parametrize("service", SERVICES)
async def test_event_data_has_statistics_target_zero_and_the_other_columns_the_default(service: str) -> None:
    engine = create_async_engine(database_url(BY_NAME[service]), poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            rows = await session.execute(
                text(
                    "SELECT attname, attstattarget FROM pg_attribute "
                    "WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped"
                ),
                {"table": OUTBOX_TABLE},
            )
            targets = dict(rows.tuples().all())
    finally:
        await engine.dispose()
    assert targets.pop("event_data") == 0
    assert targets and set(targets.values()) == {-1}, targets
