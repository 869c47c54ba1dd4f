"""Request and response bodies of the order API, and the mapper from an order to its response.

Money is a decimal string ("19.90").
"""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from apps.common.fields import LINE_PATTERN, NO_NUL_PATTERN
from apps.order.rules import STATUSES

if TYPE_CHECKING:
    from apps.order.services import OrderView

MAX_LINES = 100
MAX_QUANTITY = 1000

Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY, description="units, 1..1000")]
Text = Annotated[str, Meta(max_length=2000, pattern=NO_NUL_PATTERN)]
Short = Annotated[str, Meta(min_length=1, max_length=255, pattern=LINE_PATTERN)]
Code = Annotated[str, Meta(min_length=1, max_length=20, pattern=LINE_PATTERN)]
Country = Annotated[str, Meta(pattern="^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
Status = Literal["pending", "confirmed", "processing", "shipped", "delivered", "cancelled"]
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]


class Address(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A postal address, copied onto the order as it was when the order was placed."""

    address_line1: Short
    city: Short
    country: Country
    first_name: Short | None = None
    last_name: Short | None = None
    company: Short | None = None
    address_line2: Short | None = None
    state: Short | None = None
    postal_code: Code | None = None
    phone: Code | None = None


class OrderLineIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Quantity


class OrderCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/orders. Prices come from the catalog, never from the client."""

    customer_id: uuid.UUID
    items: Annotated[list[OrderLineIn], Meta(min_length=1, max_length=MAX_LINES)]
    shipping_address: Address | None = None
    billing_address: Address | None = None
    notes: Text | None = None


class StatusChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: Status
    reason: Text | None = None


class CancelRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Text | None = None


class OrderLineOut(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    total_price: Decimal


class OrderOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    order_number: str
    customer_id: str
    status: str
    payment_status: str
    # The saga step the order waits on (reservation, payment), until when; null once it is decided.
    waiting_on: str | None
    waiting_until: dt.datetime | None
    currency: str
    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    discount_amount: Decimal
    total_amount: Decimal
    items: list[OrderLineOut]
    shipping_address: Address | None
    billing_address: Address | None
    notes: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    cancelled_at: dt.datetime | None


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[OrderOut]
    next_cursor: str | None


def to_order_out(view: OrderView) -> OrderOut:
    order = view.order
    return OrderOut(
        id=order.id,
        order_number=order.order_number,
        customer_id=order.customer_id,
        status=order.status,
        payment_status=order.payment_status,
        waiting_on=view.saga.waiting_on if view.saga else None,
        waiting_until=view.saga.deadline_at if view.saga else None,
        currency=order.currency,
        subtotal=order.subtotal,
        tax_amount=order.tax_amount,
        shipping_amount=order.shipping_amount,
        discount_amount=order.discount_amount,
        total_amount=order.total_amount,
        items=[
            OrderLineOut(
                product_id=i.product_id,
                sku=i.product_sku,
                name=i.product_name,
                quantity=i.quantity,
                unit_price=i.unit_price,
                total_price=i.total_price,
            )
            for i in view.items
        ],
        shipping_address=msgspec.convert(order.shipping_address, Address) if order.shipping_address else None,
        billing_address=msgspec.convert(order.billing_address, Address) if order.billing_address else None,
        notes=order.notes,
        created_at=order.created_at,
        updated_at=order.updated_at,
        cancelled_at=order.cancelled_at,
    )
