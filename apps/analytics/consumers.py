"""The analytics consumer group: order events -> daily_sales and product_sales (rules in rules.py).

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
from typing import TYPE_CHECKING

from apps.analytics.rules import fold
from apps.analytics.services import SalesService
from apps.common.consumer_db import consumer_database_url
from apps.order.events import OrderCancelled, OrderCreated
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# The database holding this group's inbox and projections (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("analytics")
group = ConsumerGroup("analytics")
# What a rebuild empties before replaying (python -m outbox.replay analytics --rebuild).
projection_tables = ("daily_sales", "product_sales")


async def apply_order_events(
    session: AsyncSession, items: Sequence[tuple[OrderCreated | OrderCancelled, EventContext]]
) -> None:
    """Fold the batch's order events and add the result to both projections (one upsert per table)."""
    await SalesService(session).apply(fold(event for event, _ in items))


group.batch_handler("order.created")(apply_order_events)
group.batch_handler("order.cancelled")(apply_order_events)
