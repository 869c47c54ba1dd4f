"""Refunds for returns: the returns service's return.received (and a refund_only return's return.approved)
become a pending refund operation on the order's captured payment; the payment worker calls the provider.

The operation's id is the event's ``refund_id`` and its provider key is derived from it, so a redelivered
or replayed event finds the same operation and the provider refunds once. The amount is the returns
service's (computed from the order's prices) and never more than was captured and not yet refunded: a
refund beyond that, or for an order with no captured payment, is answered with payment.refund_failed.
A return with nothing to refund (return.received v2's ``no_refund_reason``: the order was placed without
payment; a refund_only approval without ``refund``) asks nothing here: no operation, no answer. A return
that asks for a refund of an order with no payment at all contradicts that and is dead-lettered.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from apps.common.errors import FieldProblem
from apps.common.models import utc_now
from apps.payment.events import PaymentRefundFailed
from apps.payment.models import Payment, PaymentOperation
from apps.payment.rules import CAPTURED, PARTIALLY_REFUNDED, PENDING, REFUND, check_refund
from apps.returns.events import RefundOrder, ReturnApproved, ReturnReceivedV1
from outbox.errors import RejectedEvent
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import ConsumerGroup, EventContext

__all__ = ["refund_for_return", "register"]


def register(group: ConsumerGroup) -> None:
    """Add the return handlers to the payment consumer group."""
    group.handler("return.received")(_received)
    group.handler("return.approved")(_approved)


async def _received(session: AsyncSession, event: ReturnReceivedV1, ctx: EventContext) -> None:
    if event.asks_refund():  # v1 always; v2 unless the returns service found nothing to refund
        await refund_for_return(session, event.order_id, event.return_id, event.refund)


async def _approved(session: AsyncSession, event: ReturnApproved, ctx: EventContext) -> None:
    if event.refund is not None:  # only a refund_only return is refunded on approval
        await refund_for_return(session, event.order_id, event.return_id, event.refund)


async def refund_for_return(
    session: AsyncSession, order_id: uuid.UUID, return_id: uuid.UUID, refund: RefundOrder
) -> None:
    """The pending refund operation ``refund.refund_id`` (nothing if it exists), or payment.refund_failed."""
    if await session.scalar(select(PaymentOperation.id).where(PaymentOperation.id == refund.refund_id)):
        return  # asked before: the same operation, one refund
    payments = (
        await session.scalars(
            select(Payment)
            .where(Payment.order_id == order_id)
            .order_by(Payment.created_at, Payment.id)
            .with_for_update()
        )
    ).all()
    if not payments:
        raise RejectedEvent(f"return {return_id}: order {order_id} has no payment to refund")
    payment = next((p for p in reversed(payments) if p.status in (CAPTURED, PARTIALLY_REFUNDED)), payments[-1])
    pending = await session.scalar(
        select(func.coalesce(func.sum(PaymentOperation.amount), 0)).where(
            PaymentOperation.payment_id == payment.id,
            PaymentOperation.kind == REFUND,
            PaymentOperation.outcome == PENDING,
        )
    )
    now = utc_now()
    try:
        amount = check_refund(
            payment.status, payment.captured_amount, payment.refunded_amount, Decimal(pending or 0), refund.amount
        )
    except FieldProblem as exc:
        failed = PaymentRefundFailed(
            payment_id=payment.id,
            order_id=order_id,
            refund_id=refund.refund_id,
            amount=refund.amount,
            reason=exc.message,
            failed_at=now,
        )
        await add_event(session, order_id, failed)
        return
    await session.execute(
        pg_insert(PaymentOperation)
        .values(
            id=refund.refund_id,
            payment_id=payment.id,
            kind=REFUND,
            idempotency_key=f"{payment.id}:refund:return:{refund.refund_id}",
            amount=amount,
            outcome=PENDING,
            reason=refund.reason[:255],
            request={"reason": refund.reason, "return_id": str(return_id), "requested_amount": str(amount)},
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[PaymentOperation.idempotency_key])
    )
