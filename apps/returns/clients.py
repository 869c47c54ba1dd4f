"""The returns service's call to the order service: an order's lines, amounts and status (the fallback and
the once-per-order source of the lines; see OrderSnapshot). Over apps.common.service_client: a short
timeout, and a 503 naming the order service when it fails."""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import msgspec
from litestar import Litestar

from apps.common.service_client import ServiceClient, open_service_client

__all__ = ["OrderClient", "OrderLineView", "OrderView", "orders_lifespan"]

TIMEOUT_S = float(os.environ.get("RETURNS_DEPENDENCY_TIMEOUT_S", "2.0"))


class OrderLineView(msgspec.Struct, kw_only=True):
    id: int
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


class OrderView(msgspec.Struct, kw_only=True):
    """GET /api/orders/{id}, the fields a return needs (the others are ignored)."""

    id: uuid.UUID
    customer_id: str
    status: str
    payment_status: str
    currency: str
    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    discount_amount: Decimal
    items: list[OrderLineView]
    updated_at: dt.datetime


class OrderClient:
    def __init__(self, orders: ServiceClient) -> None:
        self.orders = orders

    async def order(self, order_id: uuid.UUID) -> OrderView | None:
        """The order, or None when the order service does not know it."""
        status, content = await self.orders.get(f"/api/orders/{order_id}")
        if status == 404:
            return None
        return self.orders.decode(status, content, OrderView)


@asynccontextmanager
async def orders_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The pooled session to the order service, opened when the app starts (no I/O at import time)."""
    async with open_service_client("order", timeout_s=TIMEOUT_S) as session:
        app.state.orders = OrderClient(ServiceClient("order", session))
        yield
