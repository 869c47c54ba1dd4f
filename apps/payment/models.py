"""The payment service's tables: payments, the ledger of provider operations, the outbox and inbox."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from apps.common.models import ServiceBase, timestamp
from apps.payment.rules import KINDS, OUTCOMES, STATUSES


class Base(ServiceBase, bind_key="payment", inbox=True):
    """Every payment table lives on this service's own metadata, next to its outbox tables."""


class Payment(Base):
    """One attempt to take an order's money: authorized, then captured (and maybe refunded) or voided.

    Amounts are in the currency's major unit (the provider's minor units are converted at the adapter).
    The CHECKs are the backstop of rules.py: nothing refunds more than was captured, nothing captures
    more than was authorized.
    """

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_nonnegative"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status_known"),
        CheckConstraint("captured_amount >= 0 AND captured_amount <= amount", name="captured_within_amount"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= captured_amount", name="refunded_within_captured"),
        CheckConstraint("amount_minor >= 0", name="amount_minor_nonnegative"),
        CheckConstraint("minor_exponent IN (0, 2, 3, 4)", name="minor_exponent_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(50))
    provider_reference: Mapped[str | None] = mapped_column(String(100))
    payment_method_type: Mapped[str] = mapped_column(String(30))
    # The payment's own key: one payment (and one provider authorization) per key, however often asked.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    # The authorization as sent to the provider: its integer minor units and their exponent (2 for hundredths).
    # Every later call of the payment (capture, refund) is sent in that unit (rules.sent_minor), whatever the
    # currency table says by then. NULL only on rows the release before payment_0005 wrote after its backfill
    # (that code sent today's table, which is what a NULL reads as).
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    minor_exponent: Mapped[int | None] = mapped_column(SmallInteger)
    captured_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0), server_default="0")
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0), server_default="0")
    # Why it was declined or failed (the provider's code, or ours).
    failure_code: Mapped[str | None] = mapped_column(String(100))
    # The order asked to undo the payment; acted on as soon as no operation is in flight (rules.compensation).
    cancel_requested_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()

    operations: Mapped[list[PaymentOperation]] = relationship(
        back_populates="payment", lazy="raise", order_by="(PaymentOperation.created_at, PaymentOperation.id)"
    )


class PaymentOperation(Base):
    """The ledger: one provider call (authorize, capture, void, refund) as requested and as answered.

    A row is written with outcome 'pending' and committed BEFORE the provider is called; its
    idempotency_key is the one sent to the provider. Whoever finds it still pending later (the worker,
    after a crash or a timeout) calls again with the same key and gets the provider's first answer.
    """

    __tablename__ = "payment_operations"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in KINDS)})", name="kind_known"),
        CheckConstraint(f"outcome IN ({', '.join(repr(o) for o in OUTCOMES)})", name="outcome_known"),
        CheckConstraint("amount >= 0", name="amount_nonnegative"),
        Index("ix_payment_operations_payment_id", "payment_id", "created_at"),
        # The worker's queue: only pending rows, by due time.
        Index("ix_payment_operations_due", "next_attempt_at", postgresql_where=text("outcome = 'pending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), ForeignKey("payments.id"))
    kind: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(255))
    # What was (and, on a retry, is again) sent to the provider, and what it answered last.
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the worker may (re)try a pending row: a lease while someone is calling, a backoff after.
    next_attempt_at: Mapped[dt.datetime] = timestamp()
    created_at: Mapped[dt.datetime] = timestamp()
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The id of the request or event that asked for it (outbox/correlation.py): the worker carries it out
    # under this id, so its payment.* event carries it too (payment_0010; NULL before, or asked by nobody's).
    correlation_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))

    payment: Mapped[Payment] = relationship(back_populates="operations", lazy="raise")
