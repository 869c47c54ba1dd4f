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

from apps.order.models import Order
from apps.order.rules import PENDING, order_number
from apps.order.saga_state import OrderSaga
from apps.order.transitions import SAGA, add_pending_order, amounts

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
        source_service=CHECKOUT_SERVICE,
        **amounts(event),
    )
    saga = OrderSaga(
        order_id=order.id,
        checkout_id=event.checkout_id,
        payment_method_type=event.payment_method_type[:50],
        payment_token=event.payment_method_id,
        payment_attempts=0,
        created_at=now,
    )
    await add_pending_order(session, order, event.lines, saga, changed_by=SAGA, reason="checkout completed")
    return True
