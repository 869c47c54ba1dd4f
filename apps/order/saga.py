"""The order saga's process manager: what each answer from the warehouse and the payment service does.

Orchestration: the order service alone decides the next step from its own state (order_sagas), and asks
for it with an event through its outbox, in the transaction that consumed the answer. Every handler
locks the order, then its saga row (the order every writer uses), and is idempotent: an answer for a
step the saga is no longer on changes no status, and a late answer is compensated (a late authorization
is voided; a late reservation is released by the order.cancelled already published after the
order.created that caused it, on the same partition).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from apps.order.models import Order, OrderItem, OrderStatusHistory
from apps.order.rules import CANCELLED, PENDING
from apps.order.saga_state import (
    OUT_OF_STOCK,
    PAYMENT,
    PAYMENT_DECLINED,
    RESERVATION,
    TIMEOUT,
    OrderSaga,
    enter,
)
from apps.order.transitions import SAGA, cancel, confirm, note_payment_failure, request_payment_cancel
from apps.payment.events import OrderPaymentRequested, PaymentMethod
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.warehouse.events import ReservedItem

log = logging.getLogger("apps.order.saga")


@dataclass(frozen=True)
class Held:
    """An order with its lines and saga row, all locked until the caller's transaction ends."""

    order: Order
    items: list[OrderItem]
    saga: OrderSaga | None


class Saga:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def hold(self, order_id: uuid.UUID) -> Held | None:
        """Lock the order then its saga row; None for an order this service does not know (another
        service's test traffic, or an order of another deployment)."""
        order = await self.session.scalar(select(Order).where(Order.id == order_id).with_for_update())
        if order is None:
            return None
        items = list(
            await self.session.scalars(select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.id))
        )
        saga = await self.session.scalar(select(OrderSaga).where(OrderSaga.order_id == order_id).with_for_update())
        return Held(order, items, saga)

    # -- the warehouse's answers ---------------------------------------------------------------------

    async def reserved(self, order_id: uuid.UUID, reservation_id: uuid.UUID, lines: list[ReservedItem]) -> None:
        held = await self.hold(order_id)
        if held is None:
            return
        _fill_reservation(held.items, reservation_id, lines)
        if not _waits_on(held, RESERVATION):
            return  # cancelled meanwhile: its order.cancelled (after order.created) releases the stock
        assert held.saga is not None
        if held.saga.payment_token is None:
            await confirm(self.session, held.order, held.items, held.saga, "stock reserved")
        else:
            await self._request_payment(held.order, held.saga)

    async def reservation_failed(self, order_id: uuid.UUID, reason: str) -> None:
        held = await self.hold(order_id)
        if held is None or not _waits_on(held, RESERVATION):
            return
        why = OUT_OF_STOCK if reason == "insufficient_stock" else reason
        await cancel(self.session, held.order, held.items, held.saga, why, SAGA)

    async def _request_payment(self, order: Order, saga: OrderSaga) -> None:
        now = dt.datetime.now(dt.UTC)
        saga.payment_attempts += 1
        saga.payment_requested_at = now
        enter(saga, PAYMENT, now)
        assert saga.payment_token is not None
        await add_event(
            self.session,
            order.id,
            OrderPaymentRequested(
                order_id=order.id,
                amount=order.total_amount,
                currency=order.currency,
                payment_method=PaymentMethod(type=saga.payment_method_type or "card", token=saga.payment_token),
                customer_id=order.customer_id,
                attempt=saga.payment_attempts,
                requested_at=now,
            ),
        )

    # -- the payment service's answers ---------------------------------------------------------------

    async def authorized(self, order_id: uuid.UUID, payment_id: uuid.UUID) -> None:
        held = await self.hold(order_id)
        if held is None:
            return
        held.order.payment_status = "authorized"
        held.order.payment_id = str(payment_id)
        if _waits_on(held, PAYMENT):
            assert held.saga is not None
            await confirm(self.session, held.order, held.items, held.saga, "payment authorized")
        elif held.order.status == CANCELLED and held.saga is not None:
            # A late authorization (after a timeout or a cancel): give it back (no-op if already asked).
            await request_payment_cancel(
                self.session, held.order, held.saga, held.saga.reason or "cancelled", dt.datetime.now(dt.UTC)
            )

    async def refused(self, order_id: uuid.UUID, payment_status: str) -> None:
        """payment.declined or payment.failed: release the stock and cancel (payment_declined)."""
        held = await self.hold(order_id)
        if held is None:
            return
        held.order.payment_status = payment_status
        if _waits_on(held, PAYMENT):
            await cancel(self.session, held.order, held.items, held.saga, PAYMENT_DECLINED, SAGA)

    async def payment_moved(self, order_id: uuid.UUID, payment_status: str) -> None:
        """captured, voided, refunded...: the order's payment_status follows the payment."""
        held = await self.hold(order_id)
        if held is not None:
            held.order.payment_status = payment_status

    async def payment_failed(self, order_id: uuid.UUID, payment_status: str, reason: str, event_id: uuid.UUID) -> None:
        """payment.capture_failed, void_failed or refund_failed: nothing to compensate automatically (the
        parcel left, or the order is cancelled already), so the order shows it for a person to follow up:
        payment_status and a history row with the provider's reason, once per event even if replayed."""
        held = await self.hold(order_id)
        if held is None or await self._noted(order_id, event_id):
            return
        note_payment_failure(self.session, held.order, payment_status, reason, str(event_id))

    async def _noted(self, order_id: uuid.UUID, event_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(OrderStatusHistory.id)
            .where(
                OrderStatusHistory.order_id == order_id,
                OrderStatusHistory.metadata_["event_id"].astext == str(event_id),
            )
            .limit(1)
        )
        return found is not None

    # -- the sweeper ---------------------------------------------------------------------------------

    async def time_out(self, held: Held) -> None:
        """The step's deadline passed without an answer: the same compensation, reason timeout."""
        if held.order.status == PENDING:
            await cancel(self.session, held.order, held.items, held.saga, TIMEOUT, SAGA)
        elif held.saga is not None:
            enter(held.saga, "done", dt.datetime.now(dt.UTC))


def _waits_on(held: Held, step: str) -> bool:
    return held.order.status == PENDING and held.saga is not None and held.saga.step == step


def _fill_reservation(items: list[OrderItem], reservation_id: uuid.UUID, lines: list[ReservedItem]) -> None:
    """order_items.warehouse_id and reservation_id from the warehouse's answer. A line split across
    warehouses keeps the warehouse holding most of its units (the reservation lists every split)."""
    best: dict[uuid.UUID, ReservedItem] = {}
    for reserved in lines:
        current = best.get(reserved.product_id)
        if current is None or reserved.quantity > current.quantity:
            best[reserved.product_id] = reserved
    for item in items:
        item.reservation_id = reservation_id
        if (where := best.get(item.product_id)) is not None:
            item.warehouse_id = where.warehouse_id
