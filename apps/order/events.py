"""Events the order service publishes (topic commerce.order, key = order id)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import msgspec

from outbox.events import Event, event


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One priced line of an order, as the catalog priced it when the order was placed."""

    product_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: Decimal
    total_price: Decimal


@event("order.created", version=1, aggregate="order")
class OrderCreated(Event, frozen=True, kw_only=True):
    """An order was placed: customer stats, warehouse reservations and analytics start from here."""

    order_id: uuid.UUID
    order_number: str
    # The placing customer's UUID as text: POST /api/orders requires an existing customer today. The
    # column keeps the seed's VARCHAR(36) because guest checkout (the checkout issue) will put a guest's
    # session id here; consumers must not assume a registered customer.
    customer_id: str
    status: str
    currency: str
    total_amount: Decimal
    items: list[OrderLine]
    created_at: dt.datetime


@event("order.status_changed", version=1, aggregate="order")
class OrderStatusChanged(Event, frozen=True, kw_only=True):
    """An order moved along an allowed transition."""

    order_id: uuid.UUID
    customer_id: str
    status_from: str
    status_to: str
    reason: str | None = None
    changed_at: dt.datetime


@event("order.cancelled", version=1, aggregate="order")
class OrderCancelled(Event, frozen=True, kw_only=True):
    """An order was cancelled: its reservation is released and it no longer counts as spend."""

    order_id: uuid.UUID
    customer_id: str
    currency: str
    total_amount: Decimal
    items: list[OrderLine]
    reason: str | None = None
    cancelled_at: dt.datetime
