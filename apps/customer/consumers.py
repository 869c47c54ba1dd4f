"""The customer-stats consumer group: order events -> customer_stats (orders, spend, cancellations per currency).

Purchases count on confirmation (order.confirmed; order.created only when born confirmed): projections.fold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import text

from apps.common.consumer_db import consumer_database_url
from apps.common.projections import NOT_BORN_CONFIRMED, add_deltas
from apps.customer.projections import OrderEvent, fold, not_a_purchase
from apps.customer.returns import register as register_refunds
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# The database holding this group's inbox and projections (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("customer")
group = ConsumerGroup("customer-stats")
register_refunds(group)  # return.refunded: returns count, refunded amount (apps/customer/returns.py)
# What a rebuild empties before replaying (python -m outbox.replay customer-stats --rebuild).
projection_tables = ("customer_stats",)

# One set-based upsert per batch, a row per (customer, currency); the arithmetic happens in projections.fold.
_APPLY = text(
    """
    INSERT INTO customer_stats AS s (customer_id, currency, orders_count, cancelled_count, spent, last_order_at)
    SELECT * FROM unnest(CAST(:customer_id AS varchar[]), CAST(:currency AS varchar[]), CAST(:orders AS int[]),
                         CAST(:cancelled AS int[]), CAST(:spent AS numeric[]), CAST(:last_order_at AS timestamptz[]))
    ON CONFLICT (customer_id, currency) DO UPDATE SET
        orders_count = s.orders_count + excluded.orders_count,
        cancelled_count = s.cancelled_count + excluded.cancelled_count,
        spent = s.spent + excluded.spent,
        last_order_at = GREATEST(s.last_order_at, excluded.last_order_at),
        updated_at = now()
    """
)


async def apply_order_events(session: AsyncSession, items: Sequence[tuple[OrderEvent, EventContext]]) -> None:
    """Fold the batch's order events and add the result to customer_stats in one upsert."""
    await add_deltas(session, _APPLY, ["customer_id", "currency"], fold(event for event, _ in items))


# A pending order's order.created (most of them) and its cancellation while pending change nothing here:
# skipped before the inbox, no transaction for them (order.created from its status alone: NOT_BORN_CONFIRMED).
group.batch_handler("order.created", skip=not_a_purchase, probe=NOT_BORN_CONFIRMED)(apply_order_events)
group.batch_handler("order.confirmed")(apply_order_events)
group.batch_handler("order.cancelled", skip=not_a_purchase)(apply_order_events)
