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
from apps.order.rules import CANCELLED, PENDING, SAGA
from apps.order.saga_state import (
    OUT_OF_STOCK,
    PAYMENT,
    PAYMENT_DECLINED,
    RESERVATION,
    TIMEOUT,
    OrderSaga,
    enter,
)
from apps.order.transitions import cancel, confirm, note_payment_failure, request_payment_cancel

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


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

    # -- the warehouse's answers (inventory.reserved: apps/order/saga_rows.py, in two round trips) ------

    async def reservation_failed(self, order_id: uuid.UUID, reason: str) -> None:
        held = await self.hold(order_id)
        if held is None or not _waits_on(held, RESERVATION):
            return
        why = OUT_OF_STOCK if reason == "insufficient_stock" else reason
        await cancel(self.session, held.order, held.items, held.saga, why, SAGA)
        _stepped(order_id, f"order.cancelled ({why})")

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
            _stepped(order_id, "order.confirmed")
        elif held.order.status == CANCELLED and held.saga is not None:
            # A late authorization (after a timeout or a cancel): give it back (no-op if already asked).
            await request_payment_cancel(
                self.session, held.order, held.saga, held.saga.reason or "cancelled", dt.datetime.now(dt.UTC)
            )
            _stepped(order_id, "late authorization given back")

    async def refused(self, order_id: uuid.UUID, payment_status: str) -> None:
        """payment.declined or payment.failed: release the stock and cancel (payment_declined)."""
        held = await self.hold(order_id)
        if held is None:
            return
        held.order.payment_status = payment_status
        if _waits_on(held, PAYMENT):
            await cancel(self.session, held.order, held.items, held.saga, PAYMENT_DECLINED, SAGA)
            _stepped(order_id, f"order.cancelled ({PAYMENT_DECLINED})")

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


def _stepped(order_id: uuid.UUID, step: str) -> None:
    """One line per step the saga takes on one answer (a handler of one event: milliseconds each, so the
    line's ~20 us is ~1 %), ending with the request_id of the event that caused it (outbox/redaction.py);
    the batch of inventory.reserved logs its own (saga_rows.log_steps)."""
    log.info("order %s: %s", order_id, step)


def _waits_on(held: Held, step: str) -> bool:
    return held.order.status == PENDING and held.saga is not None and held.saga.step == step
