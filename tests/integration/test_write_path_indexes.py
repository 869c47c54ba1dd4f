"""Indexes cut to what their readers need (issue 11, migrations *_event_store_created_brin and order_0014),
on the real databases: each reader can still use its index, and each rule the old index enforced holds."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.topology import BY_NAME, database_url
from outbox.models import OUTBOX_TABLE
from outbox.retention import _PURGE_OUTBOX

pytestmark = pytest.mark.usefixtures("stack")

OUTBOX_SERVICES = ("catalog", "customer", "checkout", "order", "payment", "warehouse", "returns", "analytics")
# The retention job's batch (outbox/retention.py) and PITR's resend (infra/pitr.py): created_at's readers.
_RETENTION_BATCH = (
    _PURGE_OUTBOX.text.split(" IN ", 1)[1].strip()[1:-1].replace(":cutoff", "'2020-01-01'").replace(":batch", "10")
)
_RESEND = f"SELECT * FROM {OUTBOX_TABLE} WHERE created_at >= now() - interval '1 minute' ORDER BY created_at, id"


@pytest.mark.parametrize("service", OUTBOX_SERVICES)
async def test_event_store_created_at_is_a_brin_index_its_readers_can_use(service: str) -> None:
    engine = create_async_engine(database_url(BY_NAME[service]), poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session, session.begin():
            method = await session.scalar(
                text(
                    "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                    "WHERE c.oid = to_regclass('idx_event_store_created_brin')"
                )
            )
            assert method == "brin"
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            for statement in (_RETENTION_BATCH, _RESEND):
                plan = "\n".join((await session.execute(text(f"EXPLAIN {statement}"))).scalars())
                assert "idx_event_store_created_brin" in plan, plan
    finally:
        await engine.dispose()


async def _order(session: AsyncSession) -> uuid.UUID:
    order_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO orders (id, order_number, customer_id, total_amount, source_service) "
            "VALUES (:id, :n, :c, 0, 'index-test')"
        ),
        {"id": order_id, "n": f"IDX-{order_id.hex}", "c": str(uuid.uuid4())},
    )
    return order_id


_SAGA = text("INSERT INTO order_sagas (order_id, checkout_id, step) VALUES (:id, :checkout, 'done')")


async def test_a_checkout_still_makes_at_most_one_saga_and_sagas_without_one_take_no_index_entry() -> None:
    engine = create_async_engine(database_url(BY_NAME["order"]), poolclass=NullPool)
    checkout = uuid.uuid4()
    try:
        async with AsyncSession(engine) as session:
            transaction = await session.begin()
            for _ in range(2):  # no checkout: any number
                await session.execute(_SAGA, {"id": await _order(session), "checkout": None})
            await session.execute(_SAGA, {"id": await _order(session), "checkout": checkout})
            second = await _order(session)
            with pytest.raises(IntegrityError, match="uq_order_sagas_checkout_id_set"):
                async with session.begin_nested():
                    await session.execute(_SAGA, {"id": second, "checkout": checkout})
            definition = await session.scalar(
                text("SELECT pg_get_indexdef(to_regclass('uq_order_sagas_checkout_id_set'))")
            )
            assert definition is not None and "UNIQUE" in definition and "checkout_id IS NOT NULL" in definition
            await transaction.rollback()
    finally:
        await engine.dispose()
