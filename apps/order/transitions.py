"""Status changes shared by the HTTP service and the saga: the history row, the order's columns and the
event(s) each change publishes, all added to the caller's session (the caller commits).

A cancellation also asks the payment service to give the money back whenever the saga asked it for money
(order.payment_cancel_requested voids an authorization, refunds a capture, and voids a late one).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from apps.common.responses import from_row
from apps.order.events import OrderCancelled, OrderConfirmed, OrderCreated, OrderLine, OrderStatusChanged
from apps.order.models import Order, OrderItem, OrderStatusHistory
from apps.order.rules import CANCELLED, CONFIRMED, DELIVERED, PENDING, SHIPPED, check_transition
from apps.order.saga_state import DONE, RESERVATION, OrderSaga, enter
from apps.payment.events import OrderPaymentCancelRequested, OrderPaymentCaptureRequested
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.common.pricing import PricedLine

SERVICE = "order-service"
SAGA = "order-saga"


AMOUNTS = ("currency", "subtotal", "tax_amount", "shipping_amount", "discount_amount", "total_amount")


def line(item: OrderItem) -> OrderLine:
    return from_row(OrderLine, item, sku=item.product_sku)


def amounts(priced: object) -> dict[str, Any]:
    """An order's currency and amount columns, from what priced it (a quote, a completed checkout)."""
    return {name: getattr(priced, name) for name in AMOUNTS}


async def add_pending_order(
    session: AsyncSession,
    order: Order,
    lines: Sequence[PricedLine],
    saga: OrderSaga,
    *,
    changed_by: str,
    reason: str,
) -> list[OrderItem]:
    """A new order as its saga starts: the order row (flushed first: items, history and keys refer to it),
    its items, the history row, the saga waiting on the reservation, and order.created."""
    session.add(order)
    await session.flush()
    items = [
        OrderItem(order_id=order.id, product_sku=p.sku, product_name=p.name, metadata_={}, **_item_columns(p))
        for p in lines
    ]
    session.add_all(items)
    session.add(
        OrderStatusHistory(order_id=order.id, status_to=PENDING, changed_by=changed_by, reason=reason, metadata_={})
    )
    enter(saga, RESERVATION, order.created_at)
    session.add(saga)
    created = from_row(OrderCreated, order, order_id=order.id, items=[line(item) for item in items])
    await add_event(session, order.id, created)
    return items


def _item_columns(priced: PricedLine) -> dict[str, Any]:
    return {name: getattr(priced, name) for name in ("product_id", "quantity", "unit_price", "total_price")}


def move(session: AsyncSession, order: Order, target: str, reason: str | None, changed_by: str) -> OrderStatusHistory:
    """Record the change in the history and on the order (its time is ``order.updated_at``); the history row."""
    history = OrderStatusHistory(
        order_id=order.id,
        status_from=order.status,
        status_to=target,
        changed_by=changed_by,
        reason=reason,
        metadata_={},
    )
    session.add(history)
    order.status = target
    order.updated_at = dt.datetime.now(dt.UTC)
    return history


async def confirm(session: AsyncSession, order: Order, items: list[OrderItem], saga: OrderSaga, reason: str) -> None:
    """pending -> confirmed by the saga; from here projections count the order."""
    check_transition(order.status, CONFIRMED, by_saga=True)
    move(session, order, CONFIRMED, reason, SAGA)
    now = order.updated_at
    enter(saga, DONE, now)
    await add_event(
        session,
        order.id,
        from_row(OrderConfirmed, order, order_id=order.id, items=[line(i) for i in items], confirmed_at=now),
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
    move(session, order, CANCELLED, reason, changed_by)
    now = order.updated_at
    order.cancelled_at = now
    await add_event(
        session,
        order.id,
        from_row(
            OrderCancelled,
            order,
            order_id=order.id,
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


def note_payment_failure(session: AsyncSession, order: Order, payment_status: str, reason: str, event_id: str) -> None:
    """The order's money did not move as asked (its status stays): payment_status shows it and a history
    row (from and to the same status) says why, naming the payment event it came from."""
    order.payment_status = payment_status
    order.updated_at = dt.datetime.now(dt.UTC)
    session.add(
        OrderStatusHistory(
            order_id=order.id,
            status_from=order.status,
            status_to=order.status,
            changed_by=SAGA,
            reason=f"{payment_status}: {reason}",
            metadata_={"payment_status": payment_status, "event_id": event_id},
        )
    )


async def advance(session: AsyncSession, order: Order, target: str, reason: str | None) -> None:
    """A change by hand along the flow (not a cancellation): history row, order.status_changed."""
    check_transition(order.status, target)
    history = move(session, order, target, reason, SERVICE)
    now = order.updated_at
    if target == DELIVERED:
        order.completed_at = now
    # The event says what the history row records (order, from, to, why), with the customer and the time.
    changed = from_row(OrderStatusChanged, history, customer_id=order.customer_id, changed_at=now)
    await add_event(session, order.id, changed)
    if target == SHIPPED and order.payment_status == "authorized":
        # Shipping takes the money: the whole authorization.
        await add_event(session, order.id, OrderPaymentCaptureRequested(order_id=order.id, requested_at=now))
