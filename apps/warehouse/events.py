"""Events the warehouse publishes (topic commerce.inventory, aggregate "inventory"; inventory.restocked on
commerce.inventory.restocked, a stream of its own read by returns alone: docs/events/routing.md).

The aggregate id is the order id: one order's reservation, failure and release share a partition, so a
consumer (the order service, analytics) sees them in the order they happened. Setting stock levels
publishes nothing: no service consumes stock changes yet.
"""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import uuid

import msgspec

from outbox.events import Event, event

__all__ = [
    "InventoryReleased",
    "InventoryReservationFailed",
    "InventoryReserved",
    "InventoryRestocked",
    "ReservedItem",
    "RestockedItem",
    "StockShortage",
]


class ReservedItem(msgspec.Struct, frozen=True, kw_only=True):
    """Units of one product held (or given back) in one warehouse."""

    product_id: uuid.UUID
    warehouse_id: uuid.UUID
    quantity: int


class StockShortage(msgspec.Struct, frozen=True, kw_only=True):
    """A product the order wanted more of than all warehouses together had available."""

    product_id: uuid.UUID
    requested: int
    available: int


class _ReservationItems(Event, frozen=True, kw_only=True):
    # What a reservation holds, first in both payloads (not an event of its own).
    order_id: uuid.UUID
    reservation_id: uuid.UUID
    items: list[ReservedItem]


@event("inventory.reserved", version=1, aggregate="inventory", key="order_id")
class InventoryReserved(_ReservationItems, frozen=True, kw_only=True):
    """Every line of an order is held in stock until the order ships or is cancelled."""

    reserved_at: dt.datetime


@event("inventory.reservation_failed", version=1, aggregate="inventory", key="order_id")
class InventoryReservationFailed(Event, frozen=True, kw_only=True):
    """Nothing was held for an order: a line could not be covered (``reason`` is a stable code)."""

    order_id: uuid.UUID
    # insufficient_stock (see shortages), invalid_quantity or no_items
    reason: str
    shortages: list[StockShortage]
    failed_at: dt.datetime


@event("inventory.released", version=1, aggregate="inventory", key="order_id")
class InventoryReleased(_ReservationItems, frozen=True, kw_only=True):
    """An order's held units went back to available stock (the order was cancelled)."""

    released_at: dt.datetime


class RestockedItem(msgspec.Struct, frozen=True, kw_only=True):
    """Units of a returned item put back on hand in one warehouse."""

    return_item_id: uuid.UUID
    product_id: uuid.UUID
    warehouse_id: uuid.UUID
    quantity: int


@event("inventory.restocked", version=1, aggregate="inventory", key="order_id")
class InventoryRestocked(Event, frozen=True, kw_only=True):
    """The sellable units of a received return are back on hand (``items`` may be empty: nothing was)."""

    order_id: uuid.UUID
    return_id: uuid.UUID
    items: list[RestockedItem]
    restocked_at: dt.datetime
