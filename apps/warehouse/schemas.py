"""Request and response bodies of the warehouse API.

Shape constraints sit on the fields so that Litestar names the field when they fail and OpenAPI shows
them; the rules themselves live in rules.py and are applied by the services, for every caller.
"""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import msgspec
from msgspec import Meta

from apps.warehouse.rules import MAX_QUANTITY, Stock

if TYPE_CHECKING:
    from apps.warehouse.models import Reservation

__all__ = [
    "ReservationItemOut",
    "ReservationOut",
    "ShortageOut",
    "StockLevelOut",
    "StockOut",
    "StockUpdate",
    "WarehouseStockOut",
    "to_reservation_out",
    "to_stock_level_out",
    "to_stock_out",
]

Quantity = Annotated[int, Meta(ge=0, le=MAX_QUANTITY, description="whole units", examples=[10])]


class StockUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PUT /api/inventory/{product_id}: the new on_hand count (not a delta) in one warehouse."""

    quantity: Quantity
    # None: the default warehouse (rules.DEFAULT_WAREHOUSE_ID).
    warehouse_id: uuid.UUID | None = None


class StockLevelOut(msgspec.Struct, kw_only=True):
    """A product's stock in the one warehouse a PUT changed."""

    product_id: uuid.UUID
    warehouse_id: uuid.UUID
    on_hand: int
    reserved: int
    available: int


class WarehouseStockOut(msgspec.Struct, kw_only=True):
    """A product's stock in one warehouse."""

    warehouse_id: uuid.UUID
    on_hand: int
    reserved: int
    available: int


class StockOut(msgspec.Struct, kw_only=True):
    """A product's stock summed over every warehouse (zeros when none was ever set), and per warehouse."""

    product_id: uuid.UUID
    on_hand: int
    reserved: int
    available: int
    warehouses: list[WarehouseStockOut]


class ReservationItemOut(msgspec.Struct, kw_only=True):
    """Units of one product a reservation holds (or held) in one warehouse."""

    product_id: uuid.UUID
    warehouse_id: uuid.UUID
    quantity: int


class ShortageOut(msgspec.Struct, kw_only=True):
    """Why a failed reservation failed, per product."""

    product_id: uuid.UUID
    requested: int
    available: int


class ReservationOut(msgspec.Struct, kw_only=True):
    """The warehouse's decision for an order: reserved, released, or failed (with reason and shortages)."""

    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    reason: str | None
    shortages: list[ShortageOut]
    items: list[ReservationItemOut]
    created_at: dt.datetime
    updated_at: dt.datetime
    released_at: dt.datetime | None


# The response structs name attributes of the rows (and of Stock, whose ``available`` is a property):
# each mapper reads those attributes.
def to_stock_level_out(stock: Stock) -> StockLevelOut:
    return msgspec.convert(stock, StockLevelOut, from_attributes=True)


def to_stock_out(product_id: uuid.UUID, rows: Sequence[Stock]) -> StockOut:
    on_hand = sum(row.on_hand for row in rows)
    reserved = sum(row.reserved for row in rows)
    warehouses = [msgspec.convert(row, WarehouseStockOut, from_attributes=True) for row in rows]
    return StockOut(
        product_id=product_id, on_hand=on_hand, reserved=reserved, available=on_hand - reserved, warehouses=warehouses
    )


def to_reservation_out(reservation: Reservation) -> ReservationOut:
    # strict=False: the shortages are JSONB, so their ids arrive as strings.
    return msgspec.convert(reservation, ReservationOut, from_attributes=True, strict=False)
