"""The warehouse-reservations consumer group: order.created reserves stock, order.cancelled releases it.

Each handler gets every event of its type in a polled batch (in partition order) and hands the lot to
ReservationService, inside the runtime's transaction: inbox rows, reservation rows, stock changes and the
inventory.* outbox rows commit together, so each order is decided exactly once and its outcome is
published exactly once (consume, transform, produce through the outbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from apps.common.consumer_db import consumer_database_url
from apps.order.events import OrderCancelled, OrderCreated
from apps.warehouse.restock import register as register_restock
from apps.warehouse.rules import Line
from apps.warehouse.services import ReservationRequest, ReservationService
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# The database holding this group's inbox and projections (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("warehouse")
group = ConsumerGroup("warehouse-reservations", linger_ms=50)
register_restock(group)  # return.received: sellable units back on hand (apps/warehouse/restock.py)
# Nothing for a rebuild to empty: reservations are decisions that were published and that stock_levels
# counts, not a projection that a replay can recompute. A replay is a no-op per order (order_id is unique).
projection_tables: tuple[str, ...] = ()


@group.batch_handler("order.created")
async def reserve_stock(session: AsyncSession, items: Sequence[tuple[OrderCreated, EventContext]]) -> None:
    requests = [
        ReservationRequest(
            event.order_id, [Line(line.product_id, line.quantity) for line in event.items], ctx.correlation_id
        )
        for event, ctx in items
    ]
    await ReservationService(session).reserve(requests)


@group.batch_handler("order.cancelled")
async def release_stock(session: AsyncSession, items: Sequence[tuple[OrderCancelled, EventContext]]) -> None:
    await ReservationService(session).release([event.order_id for event, _ in items])
