"""The order saga's durable state: one order_sagas row per order placed since the saga exists.

The row says which answer the order waits on (``step``) and until when (``deadline_at``); the sweeper
(apps/order/sweeper.py) compensates rows whose deadline has passed. Steps: reservation (the warehouse's
inventory.reserved / reservation_failed), payment (payment.authorized / declined / failed), done.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from apps.order.models import Base
from apps.order.settings import settings

RESERVATION: Final = "reservation"
PAYMENT: Final = "payment"
DONE: Final = "done"
STEPS: Final = (RESERVATION, PAYMENT, DONE)

# Compensation reasons (order_status_history.reason, order.cancelled.reason, the saga metric's label).
OUT_OF_STOCK: Final = "out_of_stock"
PAYMENT_DECLINED: Final = "payment_declined"
TIMEOUT: Final = "timeout"


class OrderSaga(Base):
    """The process manager's state for one order (migration 0003_saga)."""

    __tablename__ = "order_sagas"
    # Unique where set (order_0014): an order placed through the API has no checkout and no index entry.
    __table_args__ = (
        sa.Index(
            "uq_order_sagas_checkout_id_set",
            "checkout_id",
            unique=True,
            postgresql_where=sa.text("checkout_id IS NOT NULL"),
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("orders.id"), primary_key=True)
    checkout_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    step: Mapped[str] = mapped_column(sa.String(20))
    deadline_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # Why the saga ended in a cancellation (out_of_stock, payment_declined, timeout, or a customer's reason).
    reason: Mapped[str | None] = mapped_column(sa.Text)
    payment_method_type: Mapped[str | None] = mapped_column(sa.String(50))
    payment_token: Mapped[str | None] = mapped_column(sa.String(255))
    payment_attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    payment_requested_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    payment_cancel_requested_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))

    @property
    def waiting_on(self) -> str | None:
        return None if self.step == DONE else self.step


def step_timeout(step: str) -> dt.timedelta:
    """How long a step may wait for its answer: ORDER_SAGA_RESERVATION_TIMEOUT_S (120) and
    ORDER_SAGA_PAYMENT_TIMEOUT_S (15) (apps/order/settings.py says why 15)."""
    config = settings()
    seconds = {RESERVATION: config.saga_reservation_timeout_s, PAYMENT: config.saga_payment_timeout_s}[step]
    return dt.timedelta(seconds=seconds)


def enter(saga: OrderSaga, step: str, now: dt.datetime) -> None:
    """Move the saga to ``step``, with the step's deadline (none once done)."""
    saga.step = step
    saga.deadline_at = None if step == DONE else now + step_timeout(step)
    saga.updated_at = now
