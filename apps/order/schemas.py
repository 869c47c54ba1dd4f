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

from apps.common.addresses import Address
from apps.common.fields import FREE_TEXT_PATTERN
from apps.common.pricing import MAX_LINES, PricedLine
from apps.common.responses import from_row
from apps.order.rules import STATUSES, StatusReason
from apps.order.sealed import ADDRESSES, COLUMNS

if TYPE_CHECKING:
    from apps.order.services import OrderView

MAX_QUANTITY = 1000

Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY, description="units, 1..1000")]
Text = Annotated[str, Meta(max_length=2000, pattern=FREE_TEXT_PATTERN)]
Status = Literal["pending", "confirmed", "processing", "shipped", "delivered", "cancelled"]
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]


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


class OrderLineOut(PricedLine, frozen=True, kw_only=True):
    """A line of the order at the price it was placed at; ``id`` is the order_items row's (returns name it)."""

    id: int


class OrderOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    order_number: str
    customer_id: str
    status: Annotated[
        Status,
        Meta(
            description="pending -> confirmed -> processing -> shipped -> delivered, one step at a time; or cancelled"
        ),
    ]
    status_reason: Annotated[
        StatusReason | None,
        Meta(
            description=(
                "why the order is cancelled, null for any other status: out_of_stock (the warehouse could not "
                "reserve a line), reservation_refused (the warehouse refused the lines for another reason), "
                "payment_declined (the card was declined or the payment failed: payment_status says which), "
                "timeout (the reservation or the payment did not answer in time), cancelled_by_customer, "
                "cancelled_by_staff, requested (cancelled at someone's request before the order recorded whose). "
                "A code, stable across releases; a cancellation's free-text reason is not shown"
            )
        ),
    ]
    status_changed_at: Annotated[
        dt.datetime | None,
        Meta(
            description=(
                "when the order entered its status (pending: created_at; cancelled: cancelled_at); null only for "
                "an order whose status history lacks the change"
            )
        ),
    ]
    payment_status: Annotated[
        str,
        Meta(
            description=(
                "the payment as the saga last heard of it: pending (none asked yet; an order placed without payment "
                "stays pending), authorized, declined, captured, voided, partially_refunded, refunded, ...; a refused "
                "operation: capture_failed, void_failed, refund_failed"
            )
        ),
    ]
    waiting_on: Annotated[
        Literal["reservation", "payment"] | None,
        Meta(description="the saga step the order waits on; null once decided"),
    ]
    waiting_until: Annotated[dt.datetime | None, Meta(description="when that step times out (the order is cancelled)")]
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
    """The order's columns (its addresses included), its lines, and the saga step it waits on."""
    saga = view.saga
    return from_row(
        OrderOut,
        view.order,
        waiting_on=saga.waiting_on if saga else None,
        waiting_until=saga.deadline_at if saga else None,
        status_reason=view.status_reason,
        status_changed_at=view.status_changed_at,
        items=[from_row(OrderLineOut, i, sku=i.product_sku, name=i.product_name) for i in view.items],
        **(view.addresses if view.addresses is not None else ADDRESSES.open_row("orders", view.order, COLUMNS)),
    )
