"""The order sweeper's dashboard counts (apps/order/sweeper.py) on the real order_db: through the partial
indexes of migrations order_0012-0013 they give what a count of the whole tables gives, in one snapshot."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.topology import BY_NAME, database_url
from apps.order.sweeper import _PAYMENT_FAILURES, _PER_REASON, _WAITING, count_dashboard

pytestmark = pytest.mark.usefixtures("stack")

# The counts as they were before order_0012: every saga by step, every order's payment status.
_ALL_STEPS = text("SELECT step, count(*) FROM order_sagas GROUP BY step")
_ALL_CANCELLED = text(
    "SELECT CASE WHEN s.reason IN ('out_of_stock', 'payment_declined', 'timeout') THEN s.reason "
    "ELSE 'requested' END AS why, count(*) FROM order_sagas s JOIN orders o ON o.id = s.order_id "
    "WHERE o.status = 'cancelled' GROUP BY why"
)
_ALL_FAILURES = text(
    "SELECT payment_status, count(*) FROM orders WHERE payment_status || '' IN "
    "('capture_failed', 'void_failed', 'refund_failed') GROUP BY payment_status"
)


async def test_the_dashboard_counts_what_whole_table_counts_give_in_the_same_snapshot() -> None:
    engine = create_async_engine(database_url(BY_NAME["order"]), poolclass=NullPool, isolation_level="REPEATABLE READ")
    try:
        async with AsyncSession(engine) as session, session.begin():
            counts = await count_dashboard(session, with_done=True)
            assert counts.steps == dict((await session.execute(_ALL_STEPS)).tuples().all())
            assert counts.reasons == dict((await session.execute(_ALL_CANCELLED)).tuples().all())
            assert counts.failures == dict((await session.execute(_ALL_FAILURES)).tuples().all())
            without_done = await count_dashboard(session, with_done=False)
            assert "done" not in without_done.steps
            assert without_done.steps == {k: v for k, v in counts.steps.items() if k != "done"}
    finally:
        await engine.dispose()


async def test_the_frequent_counts_can_read_only_their_partial_indexes() -> None:
    """Each query implies its index's predicate (on a small table the planner may still prefer a scan, so
    scans are ruled out here: what is checked is that the index can answer the query)."""
    engine = create_async_engine(database_url(BY_NAME["order"]), poolclass=NullPool)
    indexes = (
        (_WAITING, "idx_order_sagas_waiting"),
        (_PAYMENT_FAILURES, "idx_orders_payment_failed"),
        (_PER_REASON, "idx_orders_cancelled_at"),
    )
    try:
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            for statement, index in indexes:
                plan = "\n".join((await session.execute(text(f"EXPLAIN {statement.text}"))).scalars())
                assert index in plan, plan
    finally:
        await engine.dispose()
