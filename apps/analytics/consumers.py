"""The analytics consumer group: order events -> daily_sales and product_sales (the fold in projections.py).

Run: ``python -m outbox.runner apps.analytics.consumers``. Rebuild: stop the consumer, then
``python -m outbox.replay analytics --to-earliest --rebuild``.

Not consumed yet, although the system map routes them here: customer.registered / updated,
product.created / updated, order.status_changed, inventory.*, payment.* and return.*. The two sales
reports need none of them (amounts, lines and days all travel in order.created / order.cancelled);
each belongs with the report that will use it (customer cohorts, product names in the top list,
fulfilment and refund figures), added as its own handler and projection table listed below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from apps.analytics.projections import fold
from apps.common.consumer_db import consumer_database_url
from apps.order.events import OrderCancelled, OrderCreated
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.analytics.projections import SalesDelta

# The database holding this group's inbox and projections (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("analytics")
group = ConsumerGroup("analytics")
# What a rebuild empties before replaying (python -m outbox.replay analytics --rebuild).
projection_tables = ("daily_sales", "product_sales")


# One set-based upsert per table and batch; the arithmetic happened in projections.fold. Keys arrive sorted,
# so two batches touching the same rows lock them in the same order and never deadlock.
_ADD_DAYS: Final = text(
    """
    INSERT INTO daily_sales AS s (day, currency, orders, revenue, cancellations)
    SELECT * FROM unnest(CAST(:days AS date[]), CAST(:currencies AS varchar[]), CAST(:orders AS int[]),
                         CAST(:revenue AS numeric[]), CAST(:cancellations AS int[]))
    ON CONFLICT (day, currency) DO UPDATE SET
        orders = s.orders + excluded.orders,
        revenue = s.revenue + excluded.revenue,
        cancellations = s.cancellations + excluded.cancellations,
        updated_at = now()
    """
)
_ADD_PRODUCTS: Final = text(
    """
    INSERT INTO product_sales AS s (product_id, currency, units, revenue)
    SELECT * FROM unnest(CAST(:products AS uuid[]), CAST(:currencies AS varchar[]), CAST(:units AS bigint[]),
                         CAST(:revenue AS numeric[]))
    ON CONFLICT (product_id, currency) DO UPDATE SET
        units = s.units + excluded.units,
        revenue = s.revenue + excluded.revenue,
        updated_at = now()
    """
)


async def apply_order_events(
    session: AsyncSession, items: Sequence[tuple[OrderCreated | OrderCancelled, EventContext]]
) -> None:
    """Fold the batch's order events and add the result to both projections (one upsert per table)."""
    await add_sales(session, fold(event for event, _ in items))


async def add_sales(session: AsyncSession, delta: SalesDelta) -> None:
    """Add a batch's deltas to both projections; the consumer runtime's transaction commits."""
    days = sorted(delta.days)
    if days:
        await session.execute(
            _ADD_DAYS,
            {
                "days": [day for day, _ in days],
                "currencies": [currency for _, currency in days],
                "orders": [delta.days[k].orders for k in days],
                "revenue": [delta.days[k].revenue for k in days],
                "cancellations": [delta.days[k].cancellations for k in days],
            },
        )
    products = sorted(delta.products)
    if products:
        await session.execute(
            _ADD_PRODUCTS,
            {
                "products": [product_id for product_id, _ in products],
                "currencies": [currency for _, currency in products],
                "units": [delta.products[k].units for k in products],
                "revenue": [delta.products[k].revenue for k in products],
            },
        )


group.batch_handler("order.created")(apply_order_events)
group.batch_handler("order.cancelled")(apply_order_events)
