"""HTTP routes of the warehouse: decode, call one service method, return a schema."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from typing import TypeAlias

from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from apps.common.auth import allow
from apps.common.providers import create_service_provider
from apps.warehouse.schemas import (
    ReservationOut,
    StockLevelOut,
    StockOut,
    StockUpdate,
    to_reservation_out,
    to_stock_level_out,
    to_stock_out,
)
from apps.warehouse.services import ReservationService, StockService

__all__ = ["InventoryController", "ReservationController"]

# The request's services, injected by parameter name.
Stocks: TypeAlias = NamedDependency[StockService]
Reservations: TypeAlias = NamedDependency[ReservationService]


class InventoryController(Controller):
    """Stock levels per product: set on hand, read on hand / reserved / available."""

    path = "/api/inventory"
    tags = ["inventory"]
    dependencies = {"stocks": create_service_provider(StockService, from_state=["dependencies"])}

    @put("/{product_id:uuid}", guards=[allow("admin")])
    async def set_stock(
        self, product_id: FromPath[uuid.UUID], data: JSONBody[StockUpdate], stocks: Stocks
    ) -> StockLevelOut:
        """Set the units on hand in a warehouse (the default one if none is named) of a product the catalog
        has (422 otherwise; 503 if the catalog does not answer); 409 below what is reserved."""
        return to_stock_level_out(await stocks.set_on_hand(product_id, data.quantity, data.warehouse_id))

    @get("/{product_id:uuid}", guards=[allow("staff")])
    async def get_stock(self, product_id: FromPath[uuid.UUID], stocks: Stocks) -> StockOut:
        """A product's stock over every warehouse; zeros (not 404) when its stock was never set."""
        return to_stock_out(product_id, await stocks.levels(product_id))


class ReservationController(Controller):
    """What the warehouse decided for orders (reservations are made by the order.created consumer)."""

    path = "/api/reservations"
    tags = ["reservations"]
    dependencies = {"reservations": create_service_provider(ReservationService)}

    @get(guards=[allow("staff")])
    async def list_reservations(
        self, order_id: FromQuery[uuid.UUID], reservations: Reservations
    ) -> list[ReservationOut]:
        """The order's reservation with its items and status; an empty list while none was decided."""
        return [to_reservation_out(r) for r in await reservations.for_order(order_id)]
