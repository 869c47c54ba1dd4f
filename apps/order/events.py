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
    """An order was placed (``status`` pending; confirmed for orders placed before the saga): the
    warehouse reserves its stock. Projections count it once it is confirmed (order.confirmed), or here
    when it was born confirmed."""

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


@event("order.confirmed", version=1, aggregate="order")
class OrderConfirmed(Event, frozen=True, kw_only=True):
    """The saga confirmed a pending order: its stock is held (and its payment authorized). From here the
    order counts as a purchase (customer stats) and as revenue (analytics)."""

    order_id: uuid.UUID
    order_number: str
    customer_id: str
    currency: str
    total_amount: Decimal
    items: list[OrderLine]
    payment_status: str
    created_at: dt.datetime
    confirmed_at: dt.datetime


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
class OrderCancelledV1(Event, frozen=True, kw_only=True):
    """An order was cancelled: its reservation is released and it no longer counts as spend."""

    order_id: uuid.UUID
    customer_id: str
    currency: str
    total_amount: Decimal
    items: list[OrderLine]
    reason: str | None = None
    cancelled_at: dt.datetime

    def had_been_confirmed(self) -> bool:
        """Whether projections counted the order (and must net it out): v1 orders were born confirmed."""
        return True


@event("order.cancelled", version=2, aggregate="order", min_reader_version=2)
class OrderCancelled(OrderCancelledV1, frozen=True, kw_only=True):
    """v2 says whether the order had been confirmed: false for an order the saga cancelled while pending
    (out of stock, payment declined, timeout), which no projection ever counted. A v1 reader would net such
    an order out of what was spent: min_reader_version=2."""

    was_confirmed: bool = True

    def had_been_confirmed(self) -> bool:
        return self.was_confirmed
