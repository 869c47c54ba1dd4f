"""customer_0013 (customer_stats per currency) on a scratch customer database: what it does to the rows of
the release before, what that release's statements get from it while it still runs, and its downgrade."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.common.db import alchemy_config
from apps.common.projections import add_deltas
from apps.common.topology import BY_NAME
from apps.customer.consumers import _APPLY
from apps.customer.projections import StatsDelta, fold
from bench import hops as hops_bench
from bench import orders as orders_bench
from outbox.retry import is_retryable
from tests.integration.test_migrations_round_trip import scratch_database
from tests.support.orders import order_created

pytestmark = pytest.mark.usefixtures("stack")

SPEC = BY_NAME["customer"]
# The release before's order upsert (apps/customer/consumers.py at customer_0012), as it sends it.
OLD_UPSERT = """
    INSERT INTO customer_stats AS s (customer_id, orders_count, cancelled_count, total_spent, last_order_at)
    SELECT * FROM unnest($1::varchar[], $2::int[], $3::int[], $4::numeric[], $5::timestamptz[])
    ON CONFLICT (customer_id) DO UPDATE SET
        orders_count = s.orders_count + excluded.orders_count,
        total_spent = s.total_spent + excluded.total_spent
"""


async def _run(url: str, *statements: tuple[str, tuple[Any, ...]]) -> list[list[asyncpg.Record]]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return [await conn.fetch(sql, *args) for sql, args in statements]
    finally:
        await conn.close()


def _rows(url: str, columns: str) -> list[tuple[Any, ...]]:
    """customer_stats' rows, customer_id and then ``columns``, by customer."""
    [rows] = asyncio.run(_run(url, (f"SELECT customer_id, {columns} FROM customer_stats ORDER BY 1, 2", ())))
    return [tuple(r) for r in rows]


async def _apply(url: str, deltas: dict[tuple[str, str], StatsDelta]) -> None:
    """The order handler's upsert (apply_order_events: add_deltas of the fold), on the scratch database."""
    engine = create_async_engine(url, pool_size=1)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            await add_deltas(session, _APPLY, ["customer_id", "currency"], deltas)
    finally:
        await engine.dispose()


def test_rows_before_it_keep_their_numbers_under_xxx_and_the_release_before_is_retried_not_dead_lettered() -> None:
    with scratch_database(SPEC) as url:
        commands = AlembicCommands(sqlalchemy_config=alchemy_config(SPEC))
        commands.upgrade("customer_0012")
        asyncio.run(
            _run(
                url,
                (
                    "INSERT INTO customer_stats (customer_id, orders_count, cancelled_count, total_spent, "
                    "last_order_at, returns_count, refunded_amount) VALUES "
                    "('c1', 3, 1, 10100.00, now(), 1, 5.00), ('c2', 1, 0, 9.99, now(), 0, 0)",
                    (),
                ),
            )
        )
        commands.upgrade("customer_0013")
        assert _rows(url, "currency, orders_count, cancelled_count, spent, returns_count, refunded") == [
            ("c1", "XXX", 3, 1, Decimal("10100.00"), 1, Decimal("5.00")),
            ("c2", "XXX", 1, 0, Decimal("9.99"), 0, Decimal("0.00")),
        ]

        # The release before, still running: its upsert names a renamed column, which the consumer retries.
        with pytest.raises(asyncpg.UndefinedColumnError) as refused:
            asyncio.run(_run(url, (OLD_UPSERT, (["c1"], [1], [0], [Decimal("1.00")], [None]))))
        assert is_retryable(refused.value)

        # This release's handler: a new currency is a row of its own; no event carries XXX.
        events = [order_created("c1", "10000", currency="JPY"), order_created("c1", "100.00")]
        asyncio.run(_apply(url, fold(events)))
        [rows] = asyncio.run(
            _run(url, ("SELECT currency, orders_count, spent FROM customer_stats WHERE customer_id = 'c1'", ()))
        )
        assert sorted(tuple(r) for r in rows) == [
            ("JPY", 1, Decimal("10000.00")),
            ("USD", 1, Decimal("100.00")),
            ("XXX", 3, Decimal("10100.00")),
        ]
        # `just bench`'s queries of the projection (commit-to-stats, hops) read it as before: a row per bench
        # customer, all of whose orders are in one currency.
        [counted, hops] = asyncio.run(_run(url, (orders_bench.STATS_SQL, (["c1"],)), (hops_bench.COUNTED, (["c1"],))))
        assert sorted(r["customer_id"] for r in counted) == ["c1", "c1", "c1"]
        assert sorted(r["customer_id"] for r in hops) == ["c1", "c1"]  # orders_count = 1: JPY and USD
        with pytest.raises(asyncpg.CheckViolationError):  # the database's refusal: that event's dead letter
            asyncio.run(_run(url, ("INSERT INTO customer_stats (customer_id, currency) VALUES ('c3', 'usd')", ())))

        # Down again: a customer's currencies added together, as the schema before did.
        commands.downgrade("customer_0012")
        assert _rows(url, "orders_count, cancelled_count, total_spent, returns_count, refunded_amount") == [
            ("c1", 5, 1, Decimal("20200.00"), 1, Decimal("5.00")),
            ("c2", 1, 0, Decimal("9.99"), 0, Decimal("0.00")),
        ]
        commands.upgrade("head")
