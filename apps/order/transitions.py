"""Status changes shared by the HTTP service and the saga: the history row, the order's columns and the
event(s) each change publishes, all added to the caller's session (the caller commits).

A cancellation also asks the payment service to give the money back whenever the saga asked it for money
(order.payment_cancel_requested voids an authorization, refunds a capture, and voids a late one).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from apps.order.events import OrderCancelled, OrderConfirmed, OrderLine, OrderStatusChanged
from apps.order.models import Order, OrderItem, OrderStatusHistory
from apps.order.rules import CANCELLED, CONFIRMED, DELIVERED, PENDING, SHIPPED, check_transition
from apps.order.saga_state import DONE, OrderSaga, enter
from apps.payment.events import OrderPaymentCancelRequested, OrderPaymentCaptureRequested
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

SERVICE = "order-service"
SAGA = "order-saga"


def line(item: OrderItem) -> OrderLine:
    return OrderLine(
        product_id=item.product_id,
        sku=item.product_sku,
        quantity=item.quantity,
        unit_price=item.unit_price,
        total_price=item.total_price,
    )


def move(session: AsyncSession, order: Order, target: str, reason: str | None, changed_by: str) -> dt.datetime:
    """Record the change in the history and on the order; return its time."""
    now = dt.datetime.now(dt.UTC)
    session.add(
        OrderStatusHistory(
            order_id=order.id,
            status_from=order.status,
            status_to=target,
            changed_by=changed_by,
            reason=reason,
            metadata_={},
        )
    )
    order.status = target
    order.updated_at = now
    return now


async def confirm(session: AsyncSession, order: Order, items: list[OrderItem], saga: OrderSaga, reason: str) -> None:
    """pending -> confirmed by the saga; from here projections count the order."""
    check_transition(order.status, CONFIRMED, by_saga=True)
    now = move(session, order, CONFIRMED, reason, SAGA)
    enter(saga, DONE, now)
    await add_event(
        session,
        order.id,
        OrderConfirmed(
            order_id=order.id,
            order_number=order.order_number,
            customer_id=order.customer_id,
            currency=order.currency,
            total_amount=order.total_amount,
            items=[line(i) for i in items],
            payment_status=order.payment_status,
            created_at=order.created_at,
            confirmed_at=now,
        ),
    )


async def cancel(
    session: AsyncSession,
    order: Order,
    items: list[OrderItem],
    saga: OrderSaga | None,
    reason: str | None,
    changed_by: str,
) -> None:
    """Cancel (order.cancelled makes the warehouse release what it holds) and undo the payment if asked for."""
    check_transition(order.status, CANCELLED)
    was_confirmed = order.status != PENDING
    now = move(session, order, CANCELLED, reason, changed_by)
    order.cancelled_at = now
    await add_event(
        session,
        order.id,
        OrderCancelled(
            order_id=order.id,
            customer_id=order.customer_id,
            currency=order.currency,
            total_amount=order.total_amount,
            items=[line(i) for i in items],
            reason=reason,
            cancelled_at=now,
            was_confirmed=was_confirmed,
        ),
    )
    if saga is None:
        return
    saga.reason = reason
    enter(saga, DONE, now)
    await request_payment_cancel(session, order, saga, reason or "cancelled", now)


async def request_payment_cancel(
    session: AsyncSession, order: Order, saga: OrderSaga, reason: str, now: dt.datetime
) -> None:
    """Once per order, and only if money was ever asked for: the payment undoes whatever it holds."""
    if saga.payment_requested_at is None or saga.payment_cancel_requested_at is not None:
        return
    saga.payment_cancel_requested_at = now
    await add_event(session, order.id, OrderPaymentCancelRequested(order_id=order.id, reason=reason, requested_at=now))


async def advance(session: AsyncSession, order: Order, target: str, reason: str | None) -> None:
    """A change by hand along the flow (not a cancellation): history row, order.status_changed."""
    check_transition(order.status, target)
    previous = order.status
    now = move(session, order, target, reason, SERVICE)
    if target == DELIVERED:
        order.completed_at = now
    await add_event(
        session,
        order.id,
        OrderStatusChanged(
            order_id=order.id,
            customer_id=order.customer_id,
            status_from=previous,
            status_to=target,
            reason=reason,
            changed_at=now,
        ),
    )
    if target == SHIPPED and order.payment_status == "authorized":
        # Shipping takes the money: the whole authorization.
        await add_event(session, order.id, OrderPaymentCaptureRequested(order_id=order.id, requested_at=now))
