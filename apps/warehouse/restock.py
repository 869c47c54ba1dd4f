"""Restocking returns: the sellable units of a received return (return.received, ``restock`` true) go back
on hand in the warehouse that shipped them (the order's reservation says which; the default warehouse
otherwise), and inventory.restocked tells the returns service where, in the same transaction.

Runs in the warehouse-reservations consumer group (its inbox applies each return once). Units of a
shipped order stay counted in ``reserved`` today (nothing ships stock out yet), so a restock adds to
``on_hand``: the returned units become available again.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from apps.common.models import utc_now
from apps.returns.events import ReturnReceived
from apps.warehouse.events import InventoryRestocked, RestockedItem
from apps.warehouse.models import Base, Reservation, ReservationItem, StockLevel
from apps.warehouse.rules import DEFAULT_WAREHOUSE_ID
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import ConsumerGroup, EventContext

__all__ = ["register", "restock_return"]


def register(group: ConsumerGroup) -> None:
    """Add the restock handler to the warehouse's consumer group."""
    group.handler("return.received")(_received)


async def _received(session: AsyncSession, event: ReturnReceived, ctx: EventContext) -> None:
    await restock_return(session, event)


async def _shipped_from(session: AsyncSession, order_id: uuid.UUID) -> dict[uuid.UUID, uuid.UUID]:
    """Each product of the order and the warehouse its units were held in."""
    rows = await session.execute(
        select(ReservationItem.product_id, ReservationItem.warehouse_id)
        .join(Reservation, Reservation.id == ReservationItem.reservation_id)
        .where(Reservation.order_id == order_id)
        .order_by(ReservationItem.id)
    )
    found: dict[uuid.UUID, uuid.UUID] = {}
    for product_id, warehouse_id in rows.tuples():
        found.setdefault(product_id, warehouse_id)
    return found


async def _answered(session: AsyncSession, event: ReturnReceived) -> bool:
    """Whether this return was restocked already: its answer is in our outbox (a copy of the event under
    another id, which the inbox cannot recognise, must not restock twice)."""
    store = Base.outbox.event_store
    found = await session.scalar(
        select(store.id).where(
            store.aggregate_id == event.order_id,
            store.event_type == "inventory.restocked",
            store.event_data["return_id"].astext == str(event.return_id),
        )
    )
    return found is not None


async def restock_return(session: AsyncSession, event: ReturnReceived) -> None:
    """Put the sellable units back on hand and answer inventory.restocked, once per return."""
    if await _answered(session, event):
        return
    now = utc_now()
    origin = await _shipped_from(session, event.order_id)
    restocked: list[RestockedItem] = []
    for line in sorted(event.items, key=lambda item: item.product_id):  # lock order: no deadlock
        if not line.restock or line.quantity_received <= 0:
            continue
        warehouse_id = origin.get(line.product_id, DEFAULT_WAREHOUSE_ID)
        statement = pg_insert(StockLevel).values(
            product_id=line.product_id,
            warehouse_id=warehouse_id,
            on_hand=line.quantity_received,
            reserved=0,
            updated_at=now,
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[StockLevel.product_id, StockLevel.warehouse_id],
                set_={"on_hand": StockLevel.on_hand + line.quantity_received, "updated_at": now},
            )
        )
        restocked.append(
            RestockedItem(
                return_item_id=line.return_item_id,
                product_id=line.product_id,
                warehouse_id=warehouse_id,
                quantity=line.quantity_received,
            )
        )
    answer = InventoryRestocked(order_id=event.order_id, return_id=event.return_id, items=restocked, restocked_at=now)
    await add_event(session, event.order_id, answer)
