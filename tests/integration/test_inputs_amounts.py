"""Amounts at the top of their range, through the real pipeline (outbox, Debezium, Kafka, the consumers):
every order the order service can hold is counted, however many of them one customer has.

An order's total is at most 99,999,999.99 (orders.total_amount is NUMERIC(10,2)); any 3-letter currency
is accepted, and in VND or IDR that is an everyday laptop. customer_stats.total_spent was NUMERIC(12,2):
a customer's 101st such order overflowed it, the customer-stats consumer dead-lettered the event (class
22 is the event's fault, not retried) and the stats stopped counting that order: an event lost to the
projection. The events carry a currency of their own, so the analytics rows they add are this test's.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import AsyncIterator
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.db import connect
from tests.support.http import create_customer
from tests.support.orders import eventually, order_created, order_engine, stats, write_events

pytestmark = pytest.mark.usefixtures("stack")

LARGEST_ORDER = Decimal("99999999.99")


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = order_engine()
    yield engine
    await engine.dispose()


async def test_a_customer_with_a_hundred_and_one_largest_orders_has_them_all_counted(engine: AsyncEngine) -> None:
    customer = await create_customer()
    currency = "Q" + "".join(random.choices(string.ascii_uppercase, k=2))
    orders = [
        msgspec.structs.replace(order_created(customer["id"], str(LARGEST_ORDER)), currency=currency)
        for _ in range(101)
    ]
    await write_events(engine, orders, per_transaction=101)

    async def all_counted() -> bool:
        row = await stats(customer["id"], currency)
        return row is not None and row["orders_count"] == len(orders)

    await eventually(all_counted, within=90, what="101 orders counted in customer_stats")
    row = await stats(customer["id"], currency)
    assert row is not None and row["spent"] == LARGEST_ORDER * len(orders)


async def test_a_product_and_a_day_past_ten_thousand_largest_orders_count_the_next(engine: AsyncEngine) -> None:
    currency = "Q" + "".join(random.choices(string.ascii_uppercase, k=2))
    order = msgspec.structs.replace(order_created("analytics-amounts", str(LARGEST_ORDER)), currency=currency)
    product_id = order.items[0].product_id
    earlier = LARGEST_ORDER * 10_000
    db = await connect("analytics")
    try:
        await db.execute(
            "INSERT INTO product_sales (product_id, currency, units, revenue) VALUES ($1, $2, 10000, $3)",
            product_id,
            currency,
            earlier,
        )
        day = dt.datetime.now(dt.UTC).date()
        await db.execute(
            "INSERT INTO daily_sales (day, currency, orders, revenue) VALUES ($1, $2, 10000, $3)",
            day,
            currency,
            earlier,
        )
        await write_events(engine, [order])

        async def counted() -> bool:
            units = await db.fetchval(
                "SELECT units FROM product_sales WHERE product_id = $1 AND currency = $2", product_id, currency
            )
            return bool(units == 10_001)

        await eventually(counted, within=90, what="the 10,001st order counted in product_sales")
        product = await db.fetchrow(
            "SELECT revenue FROM product_sales WHERE product_id = $1 AND currency = $2", product_id, currency
        )
        daily = await db.fetchrow(
            "SELECT orders, revenue FROM daily_sales WHERE day = $1 AND currency = $2", day, currency
        )
        assert product["revenue"] == earlier + LARGEST_ORDER
        assert (daily["orders"], daily["revenue"]) == (10_001, earlier + LARGEST_ORDER)
    finally:
        await db.close()
