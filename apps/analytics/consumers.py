"""The analytics consumer group: order events -> daily_sales and product_sales (the fold in projections.py).

Run: ``python -m outbox.runner apps.analytics.consumers``. Rebuild: stop the consumer, then
``python -m outbox.replay analytics --to-earliest --rebuild``.

Not consumed yet, although the system map routes them here: customer.registered / updated,
product.created / updated, order.status_changed, inventory.*, payment.* and the return.* events but
return.refunded (apps/analytics/returns.py). The sales reports need none of them (amounts, lines and days
travel in order.created / confirmed / cancelled, refunds in return.refunded);
each belongs with the report that will use it (customer cohorts, product names in the top list,
fulfilment figures), added as its own handler and projection table listed below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from apps.analytics.projections import OrderEvent, fold, not_a_sale
from apps.analytics.returns import register as register_refunds
from apps.common.consumer_db import consumer_database_url
from apps.common.projections import NOT_BORN_CONFIRMED, add_deltas
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# The database holding this group's inbox and projections (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("analytics")
# Off every latency-measured path: the broker holds its fetches up to 200 ms (ConsumerGroup.fetch_wait_ms;
# 50 and 200 orders/s: its consumer + backend 0.61-0.81 -> 0.39 and 0.21-0.27 -> 0.13 ms per order).
group = ConsumerGroup("analytics", fetch_wait_ms=200)
register_refunds(group)  # return.refunded: returns and refunds per day and product (apps/analytics/returns.py)
# What a rebuild empties before replaying (python -m outbox.replay analytics --rebuild).
projection_tables = ("daily_sales", "product_sales")


# One set-based upsert per table and batch (add_deltas, keys sorted); the arithmetic is projections.fold.
_ADD_DAYS: Final = text(
    """
    INSERT INTO daily_sales AS s (day, currency, orders, revenue, cancellations)
    SELECT * FROM unnest(CAST(:day AS date[]), CAST(:currency AS varchar[]), CAST(:orders AS int[]),
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
    SELECT * FROM unnest(CAST(:product_id AS uuid[]), CAST(:currency AS varchar[]), CAST(:units AS bigint[]),
                         CAST(:revenue AS numeric[]))
    ON CONFLICT (product_id, currency) DO UPDATE SET
        units = s.units + excluded.units,
        revenue = s.revenue + excluded.revenue,
        updated_at = now()
    """
)


async def apply_order_events(session: AsyncSession, items: Sequence[tuple[OrderEvent, EventContext]]) -> None:
    """Fold the batch's order events and add the result to both projections (one upsert per table)."""
    sales = fold(event for event, _ in items)
    await add_deltas(session, _ADD_DAYS, ["day", "currency"], sales.days)
    await add_deltas(session, _ADD_PRODUCTS, ["product_id", "currency"], sales.products)


# A pending order's order.created (most of them) and its cancellation while pending change nothing here:
# skipped before the inbox, no transaction for them (order.created from its status alone: NOT_BORN_CONFIRMED).
group.batch_handler("order.created", skip=not_a_sale, probe=NOT_BORN_CONFIRMED)(apply_order_events)
group.batch_handler("order.confirmed")(apply_order_events)
group.batch_handler("order.cancelled", skip=not_a_sale)(apply_order_events)
