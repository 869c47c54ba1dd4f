"""Refunds for returns: the returns service's return.received (and a refund_only return's return.approved)
become a pending refund operation on the order's captured payment; the payment worker calls the provider.

The operation's id is the event's ``refund_id`` and its provider key is derived from it, so a redelivered
or replayed event finds the same operation and the provider refunds once. The amount is the returns
service's (computed from the order's prices) and never more than was captured and not yet refunded: a
refund beyond that, or for an order with no captured payment, is answered with payment.refund_failed and
a failed operation under the same id: the event coming again finds the refusal, rather than asking anew
once more is refundable (after its retry refunded it, that would be the return's second refund).
A return with nothing to refund (return.received v2's ``no_refund_reason``: the order was placed without
payment; a refund_only approval without ``refund``) asks nothing here: no operation, no answer. A return
that asks for a refund of an order with no payment at all contradicts that and is dead-lettered.

A retry (return.refund_retry_requested, staff's POST /api/returns/{id}/retry-refund after a refusal) names a
new ``refund_id``: the provider stored its refusal under the old one's key and would answer it again. Each
retry leaves exactly one ledger row under its id, so a copy or a replay of the event finds it and does
nothing. What the row is follows rules.plan_refund_retry: a pending refund of the whole amount (the worker
calls the provider; payment.refunded or payment.refund_failed answer it as for the first refund); or, when
refunds made by hand over HTTP since the return asked cover it (staff refunded it by hand meanwhile), a
0.00 succeeded row that records what of each it counts (``settled_by``: a by-hand refund's amount counts
once over all returns) and payment.refunded for the return's amount with no provider call; or a failed row
and payment.refund_failed saying why (part of it refunded by hand, a refund of it still pending, a refund by
hand since it asked still awaiting the provider's answer, more than is refundable). A retry whose event
names refunds made by hand (``settle_with``: staff's word that they paid this return back, made at any
time, before the return asked too) follows rules.plan_settlement instead: settled by those alone, or
refused naming the one at fault; the provider is never asked. Whether the row exists is read under the
payments' lock, and an event is written only with a new row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from apps.common.errors import FieldProblem
from apps.common.models import utc_now
from apps.common.pricing import check_places
from apps.payment.events import PaymentRefunded, PaymentRefundFailed
from apps.payment.models import Payment, PaymentOperation
from apps.payment.rules import (
    CAPTURED,
    OP_FAILED,
    PARTIALLY_REFUNDED,
    PENDING,
    REFUND,
    RETURN_ID,
    SETTLED_BY,
    SUCCEEDED,
    NamedRefund,
    RefundRetry,
    check_currency,
    check_refund,
    counted_for_returns,
    is_by_hand,
    is_money,
    plan_refund_retry,
    plan_settlement,
    return_refund_refusal,
)
from apps.returns.events import RefundOrder, ReturnApprovedV1, ReturnReceivedV1, ReturnRefundRetryRequestedV1
from outbox.correlation import current_uuid
from outbox.errors import RejectedEvent
from outbox.writer import add_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import ConsumerGroup, EventContext

__all__ = ["refund_for_return", "register", "retry_refund_for_return"]


def register(group: ConsumerGroup) -> None:
    """Add the return handlers to the payment consumer group."""
    group.handler("return.received")(_received)
    group.handler("return.approved")(_approved)
    group.handler("return.refund_retry_requested")(_retry_requested)


async def _received(session: AsyncSession, event: ReturnReceivedV1, ctx: EventContext) -> None:
    if event.asks_refund():  # v1 always; v2 unless the returns service found nothing to refund
        await refund_for_return(session, event.order_id, event.return_id, event.refund, event.named_refunds())


async def _approved(session: AsyncSession, event: ReturnApprovedV1, ctx: EventContext) -> None:
    if event.refund is not None:  # only a refund_only return is refunded on approval
        await refund_for_return(session, event.order_id, event.return_id, event.refund, event.named_refunds())


async def _retry_requested(session: AsyncSession, event: ReturnRefundRetryRequestedV1, ctx: EventContext) -> None:
    await retry_refund_for_return(session, event)


async def refund_for_return(
    session: AsyncSession,
    order_id: uuid.UUID,
    return_id: uuid.UUID,
    refund: RefundOrder,
    settle_with: Sequence[uuid.UUID] = (),
) -> None:
    """The pending refund operation ``refund.refund_id`` (nothing if it exists), or a failed one and
    payment.refund_failed. A refusal is kept in the ledger too: the event coming again (a redelivery, a
    replay) must find it, not ask anew once more is refundable (a refund by hand that held it up failed, a
    retry of this return asked since), which would refund the return twice. ``settle_with`` (staff named
    the refunds made by hand that paid it back, on approval or receipt): settled by those alone, or refused
    naming the one at fault (rules.plan_settlement), as a retry naming them; the provider is not asked."""
    payment = await _payment_to_refund(session, order_id, return_id)
    if await _asked_before(session, refund.refund_id):
        return  # asked before: the same operation, one refund
    now = utc_now()
    if settle_with:
        try:
            check_currency(refund.currency, payment.currency)
        except FieldProblem as exc:
            plan = RefundRetry(refused=exc.message)
        else:
            plan = plan_settlement(refund.amount, [], await _named(session, payment, settle_with))
        await _answer_without_provider(session, payment, return_id, order_id, refund, plan, now)
        return
    # Decided under the payment's lock, as POST /api/payments/{id}/refund decides the other way round.
    awaited = await _by_hand_awaited(session, payment)
    if (refused := return_refund_refusal(refund.currency, payment.currency, awaited)) is not None:
        if await _add_refund(session, payment, return_id, refund, refund.amount, now, failed=refused):
            await add_event(session, order_id, _refused(payment, refund, refused, now))
        return
    try:
        amount = await _refundable(session, payment, refund.amount)
    except FieldProblem as exc:
        if await _add_refund(session, payment, return_id, refund, refund.amount, now, failed=exc.message):
            await add_event(session, order_id, _refused(payment, refund, exc.message, now))
        return
    await _add_refund(session, payment, return_id, refund, amount, now)


async def _by_hand_awaited(session: AsyncSession, payment: Payment) -> list[uuid.UUID]:
    """The payment's refunds made by hand still awaiting the provider's answer, oldest first."""
    rows = await session.scalars(
        select(PaymentOperation)
        .where(
            PaymentOperation.payment_id == payment.id,
            PaymentOperation.kind == REFUND,
            PaymentOperation.outcome == PENDING,
        )
        .order_by(PaymentOperation.created_at, PaymentOperation.id)
    )
    return [op.id for op in rows if is_by_hand(op.request)]


async def retry_refund_for_return(session: AsyncSession, event: ReturnRefundRetryRequestedV1) -> None:
    """One ledger row under the retry's refund id (nothing if it exists): a pending refund, a settlement by
    refunds made by hand, or a refusal (see the module's doc)."""
    refund = event.refund
    # Checked under the payments' lock: a copy taken by another consumer meanwhile (a rebalance) waits here
    # and then finds the row, rather than answering the retry a second time.
    payment = await _payment_to_refund(session, event.order_id, event.return_id)
    if await _asked_before(session, refund.refund_id):
        return  # a copy or a replay of the retry
    now = utc_now()
    try:
        check_currency(refund.currency, payment.currency)
    except FieldProblem as exc:
        if await _add_refund(session, payment, event.return_id, refund, refund.amount, now, failed=exc.message):
            await add_event(session, event.order_id, _refused(payment, refund, exc.message, now))
        return
    await _supersede(session, payment, event, now)
    refunds = (
        await session.scalars(
            select(PaymentOperation)
            .where(PaymentOperation.payment_id == payment.id, PaymentOperation.kind == REFUND)
            .order_by(PaymentOperation.created_at, PaymentOperation.id)
        )
    ).all()
    earlier = set(event.earlier_refund_ids)
    own = [(op.id, op.outcome) for op in refunds if op.id in earlier]
    counted = counted_for_returns(op.request for op in refunds)

    def left(op: PaymentOperation) -> Decimal:
        return op.amount - counted.get(str(op.id), Decimal(0))

    if named_ids := event.named_refunds():  # staff named the refunds by hand that paid it back: those alone
        plan = plan_settlement(refund.amount, own, await _named(session, payment, named_ids))
    else:
        since = [op for op in refunds if is_by_hand(op.request) and op.created_at >= event.refund_asked_at]
        by_hand = [(op.id, left(op)) for op in since if op.outcome == SUCCEEDED]
        # Any refund by hand still awaited, made before the return asked too: it may be this return's money.
        awaited = [op.id for op in refunds if is_by_hand(op.request) and op.outcome == PENDING]
        plan = plan_refund_retry(refund.amount, own, by_hand, awaited)
    if plan.refund:
        try:
            amount = await _refundable(session, payment, refund.amount)
        except FieldProblem as exc:
            plan = replace(plan, refund=False, refused=exc.message)
        else:
            await _add_refund(session, payment, event.return_id, refund, amount, now)
            return
    await _answer_without_provider(session, payment, event.return_id, event.order_id, refund, plan, now)


async def _answer_without_provider(
    session: AsyncSession,
    payment: Payment,
    return_id: uuid.UUID,
    order_id: uuid.UUID,
    refund: RefundOrder,
    plan: RefundRetry,
    now: dt.datetime,
) -> None:
    """A return's refund answered here (plan.refund is False): refused (a failed row, payment.refund_failed)
    or settled already (a 0.00 succeeded row saying by what, payment.refunded for the return's amount)."""
    if plan.refused is not None:
        if await _add_refund(session, payment, return_id, refund, refund.amount, now, failed=plan.refused):
            await add_event(session, order_id, _refused(payment, refund, plan.refused, now))
        return
    # Refunded already: by hand (counted for this return from now on), or by an earlier refund of its own.
    if plan.settled_by:
        how = "refunded by hand: " + ", ".join(f"{op_id} ({amount})" for op_id, amount in plan.settled_by.items())
    else:
        how = f"refunded by {plan.already_refunded_by}"
    settled = {SETTLED_BY: {str(op_id): str(amount) for op_id, amount in plan.settled_by.items()}, "settled": how}
    if not await _add_refund(session, payment, return_id, refund, Decimal(0), now, settled=settled):
        return
    refunded = PaymentRefunded(
        payment_id=payment.id,
        order_id=order_id,
        refund_id=refund.refund_id,
        amount=refund.amount,
        refunded_total=payment.refunded_amount,
        captured_amount=payment.captured_amount,
        currency=payment.currency,
        status=payment.status,
        reason=f"{refund.reason}: {how}"[:255],
        refunded_at=now,
    )
    await add_event(session, order_id, refunded)


async def _named(session: AsyncSession, payment: Payment, named_ids: Sequence[uuid.UUID]) -> list[NamedRefund]:
    """The refunds staff named, as the payment's ledger has them (what other returns counted aside)."""
    refunds = (
        await session.scalars(
            select(PaymentOperation).where(PaymentOperation.payment_id == payment.id, PaymentOperation.kind == REFUND)
        )
    ).all()
    counted = counted_for_returns(op.request for op in refunds)
    ledger = {op.id: op for op in refunds}
    return [
        NamedRefund(op_id, found.outcome, is_by_hand(found.request), found.amount - counted.get(str(op_id), Decimal(0)))
        if (found := ledger.get(op_id)) is not None
        else NamedRefund(op_id)
        for op_id in named_ids
    ]


async def _supersede(
    session: AsyncSession, payment: Payment, event: ReturnRefundRetryRequestedV1, now: dt.datetime
) -> None:
    """A failed row under each earlier refund id of the return that has none: a retry whose event never
    applied (dead-lettered, acknowledged, and superseded by this one: POST /retry-refund with
    abandon_awaited). Its event coming later (a redrive, a replay) then finds its row and asks nothing:
    the return is refunded by this retry alone. Under the payment's lock: whichever comes first, the other
    sees it."""
    for earlier in event.earlier_refund_ids:
        if await _asked_before(session, earlier):
            continue
        superseded = RefundOrder(refund_id=earlier, amount=Decimal(0), currency=payment.currency, reason="superseded")
        why = f"superseded by retry {event.refund.refund_id}: never asked of the provider"
        await _add_refund(session, payment, event.return_id, superseded, Decimal(0), now, failed=why)


async def _asked_before(session: AsyncSession, refund_id: uuid.UUID) -> bool:
    return await session.scalar(select(PaymentOperation.id).where(PaymentOperation.id == refund_id)) is not None


async def _payment_to_refund(session: AsyncSession, order_id: uuid.UUID, return_id: uuid.UUID) -> Payment:
    """The order's captured payment (its latest payment otherwise), locked; none at all is dead-lettered."""
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
    return next((p for p in reversed(payments) if p.status in (CAPTURED, PARTIALLY_REFUNDED)), payments[-1])


async def _refundable(session: AsyncSession, payment: Payment, asked: Decimal) -> Decimal:
    """``asked`` if the payment can still refund it (refunds awaiting an answer count) in its currency's
    precision, else FieldProblem."""
    check_places("amount", asked, payment.currency)
    pending = await session.scalar(
        select(func.coalesce(func.sum(PaymentOperation.amount), 0)).where(
            PaymentOperation.payment_id == payment.id,
            PaymentOperation.kind == REFUND,
            PaymentOperation.outcome == PENDING,
        )
    )
    return check_refund(payment.status, payment.captured_amount, payment.refunded_amount, Decimal(pending or 0), asked)


def _refused(payment: Payment, refund: RefundOrder, reason: str, now: dt.datetime) -> PaymentRefundFailed:
    return PaymentRefundFailed(
        payment_id=payment.id,
        order_id=payment.order_id,
        refund_id=refund.refund_id,
        amount=refund.amount,
        reason=reason,
        failed_at=now,
    )


async def _add_refund(
    session: AsyncSession,
    payment: Payment,
    return_id: uuid.UUID,
    refund: RefundOrder,
    amount: Decimal,
    now: dt.datetime,
    *,
    failed: str | None = None,
    settled: dict[str, Any] | None = None,
) -> bool:
    """The return's refund operation: pending for the worker; or answered here, failed (``failed`` says
    why) or succeeded without a provider call (``settled``: refunded already). False if it existed."""
    answered = failed is not None or settled is not None
    outcome = PENDING if not answered else (OP_FAILED if failed is not None else SUCCEEDED)
    request = {
        "reason": refund.reason,
        RETURN_ID: str(return_id),
        "return_amount": str(refund.amount),
        **(settled or {}),
    }
    inserted = await session.scalar(
        pg_insert(PaymentOperation)
        .values(
            id=refund.refund_id,
            payment_id=payment.id,
            kind=REFUND,
            idempotency_key=f"{payment.id}:refund:return:{refund.refund_id}",
            amount=amount if is_money(amount) or amount == 0 else Decimal(0),  # a refusal of a malformed amount
            outcome=outcome,
            reason=refund.reason[:255],
            request=request,
            error=None if failed is None else failed[:500],
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            completed_at=now if answered else None,
            correlation_id=current_uuid(),
        )
        .on_conflict_do_nothing(index_elements=[PaymentOperation.idempotency_key])
        .returning(PaymentOperation.id)
    )
    return inserted is not None
