"""An erasure racing the first creation of a person's data key leaves no live key (review, session 33, W33-1).

A customer registered before customer_0007 has no personal_data_keys row; the checkout makes it on first use
(POST /api/internal/data-keys/{id}: ``data_key(create=True)``, an INSERT .. ON CONFLICT DO NOTHING) without
touching the customer's row. The erasure locks the customer and destroys the key (``destroy_data_key``). If
the creation's INSERT is in flight when the erasure runs, the erasure must still leave the subject's key
destroyed: otherwise the key outlives the erasure, everything sealed with it stays readable, and a second
erase (status 'erased' already) never destroys it.

Pinned with locks, not timing: the creation's transaction stays open until pg_stat_activity shows the
erasure's statement waiting on it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.common.db import litestar_alchemy_config
from apps.common.topology import BY_NAME
from apps.customer.data_keys import data_key, destroy_data_key
from tests.support.db import fetch

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = litestar_alchemy_config(BY_NAME["customer"]).get_engine()
    yield engine
    await engine.dispose()


async def _waiting_on_a_lock(engine: AsyncEngine, pid: int) -> None:
    """Until the backend ``pid`` waits on a lock (at most 10 s)."""
    async with engine.connect() as conn:
        for _ in range(1000):
            found = await conn.scalar(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            await conn.rollback()
            if found:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the erasure's statement never waited on the creation")


async def test_an_erasure_during_the_first_key_creation_leaves_the_key_destroyed(engine: AsyncEngine) -> None:
    subject = str(uuid.uuid4())  # a customer with no key row yet (registered before customer_0007)
    async with AsyncSession(engine) as creating, AsyncSession(engine) as erasing:
        key = await data_key(creating, subject, create=True)  # INSERTed, not committed
        assert key.subject == subject
        pid = await erasing.scalar(text("SELECT pg_backend_pid()"))
        assert isinstance(pid, int)

        async def erase() -> None:
            await destroy_data_key(erasing, subject)
            await erasing.commit()

        erasure = asyncio.create_task(erase())
        try:
            await _waiting_on_a_lock(engine, pid)
        finally:
            await creating.commit()
        await asyncio.wait_for(erasure, 10)

    rows = await fetch(
        "customer", "DELETE FROM personal_data_keys WHERE subject_id = $1 RETURNING wrapped_key, destroyed_at", subject
    )
    assert len(rows) == 1
    assert rows[0]["wrapped_key"] is None, "the key outlived the erasure"
    assert rows[0]["destroyed_at"] is not None
