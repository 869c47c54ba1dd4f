"""Orders from completed checkouts (checkout.completed): created pending, with the saga waiting on stock.

The event carries everything (lines priced by the checkout, addresses, totals, the provider's token) and
the order id the checkout allocated, so a redelivered event finds its order and creates nothing twice;
the checkout id is unique on order_sagas as well. Guest orders are accepted without a customer lookup:
``is_guest`` says so (``customer_id`` is then the cart's ``cs_...`` session id) and is kept in metadata.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import msgspec

from apps.order.events import OrderCreated
from apps.order.models import Order, OrderItem, OrderStatusHistory
from apps.order.rules import PENDING, order_number
from apps.order.saga_state import RESERVATION, OrderSaga, enter
from apps.order.transitions import SAGA, line
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.checkout.events import CheckoutCompleted

CHECKOUT_SERVICE = "checkout-service"


async def create_from_checkout(session: AsyncSession, event: CheckoutCompleted) -> bool:
    """Create the checkout's order, its saga row and order.created; False if it exists already."""
    if await session.get(Order, event.order_id) is not None:
        return False
    now = dt.datetime.now(dt.UTC)
    order = Order(
        id=event.order_id,
        order_number=order_number(event.order_id, now),
        customer_id=event.customer_id,
        status=PENDING,
        currency=event.currency,
        subtotal=event.subtotal,
        tax_amount=event.tax_amount,
        shipping_amount=event.shipping_amount,
        discount_amount=event.discount_amount,
        total_amount=event.total_amount,
        payment_method=event.payment_method_type[:50],
        payment_status="pending",
        shipping_address=msgspec.to_builtins(event.shipping_address),
        billing_address=msgspec.to_builtins(event.billing_address),
        metadata_={
            "checkout_id": str(event.checkout_id),
            "cart_id": str(event.cart_id),
            "is_guest": event.is_guest,
            "shipping_method_id": event.shipping_method_id,
        },
        created_at=now,
        updated_at=now,
        created_by_service=CHECKOUT_SERVICE,
    )
    session.add(order)
    await session.flush()
    items = [
        OrderItem(
            order_id=order.id,
            product_id=checkout_line.product_id,
            product_sku=checkout_line.sku,
            product_name=checkout_line.name,
            quantity=checkout_line.quantity,
            unit_price=checkout_line.unit_price,
            total_price=checkout_line.total_price,
            metadata_={},
        )
        for checkout_line in event.lines
    ]
    session.add_all(items)
    session.add(
        OrderStatusHistory(
            order_id=order.id, status_to=PENDING, changed_by=SAGA, reason="checkout completed", metadata_={}
        )
    )
    saga = OrderSaga(
        order_id=order.id,
        checkout_id=event.checkout_id,
        payment_method_type=event.payment_method_type[:50],
        payment_token=event.payment_method_id,
        payment_attempts=0,
        created_at=now,
    )
    enter(saga, RESERVATION, now)
    session.add(saga)
    await add_event(
        session,
        order.id,
        OrderCreated(
            order_id=order.id,
            order_number=order.order_number,
            customer_id=order.customer_id,
            status=PENDING,
            currency=order.currency,
            total_amount=order.total_amount,
            items=[line(item) for item in items],
            created_at=now,
        ),
    )
    return True
