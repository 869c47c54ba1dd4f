"""Carrying out the ledger's pending operations: call the provider, then write its answer.

    claim_due   one short transaction: the due pending rows (the oldest per payment), FOR UPDATE SKIP
                LOCKED, leased (next_attempt_at = now + lease) and counted; committed before any call
    execute     read the row, END the transaction, call the provider with the row's key, then apply
    apply       one transaction: the answer on the ledger row, the payment's new status and amounts, its
                payment.* event, and, for a payment whose order was cancelled, the void or refund it needs

No transaction is open while the provider is called. If the process dies after the call and before
``apply`` commits, the row is still pending; once its lease runs out the worker claims it again and calls
with the same key, and the provider answers what it answered the first time (no second charge). An
answer that does not come (timeouts, 5xx after the adapter's retries) leaves the row pending with a
capped backoff: a late authorization is learnt this way, and voided if the order was cancelled meanwhile.

A refund still unanswered ``status_after`` after it was asked (the worker's PAYMENT_REFUND_STATUS_AFTER_S) is
no longer sent again: the provider is asked what became of it (rules.asks_refund_status) and the answer is
applied as a normal one (succeeded: payment.refunded; refused: payment.refund_failed); a provider that has no
refund under its key never acted on any call, so the refund is failed (NO_RECORD) and a retry is safe. No
answer to the question either: the row stays pending and is asked again after the backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text

from apps.common.errors import StateConflict
from apps.common.models import utc_now
from apps.payment.events import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentVoided,
    PaymentVoidFailed,
)
from apps.payment.models import Payment, PaymentOperation
from apps.payment.provider import ProviderResult
from apps.payment.rules import (
    AUTHORIZE,
    AUTHORIZED,
    CAPTURE,
    CAPTURED,
    DECLINED,
    FAILED,
    OP_DECLINED,
    PENDING,
    REFUND,
    SUCCEEDED,
    TRANSITIONS,
    VOID,
    VOIDED,
    asks_refund_status,
    retry_delay,
    sent_minor,
    status_after_refund,
)
from apps.payment.services import PaymentService
from apps.payment.settings import settings
from outbox.correlation import resumed
from outbox.events import Event
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.payment.provider import PaymentProvider

__all__ = [
    "Call",
    "RefundByHand",
    "RefundRequestByHand",
    "apply_result",
    "claim_due",
    "execute",
    "refund_by_hand",
    "refund_status_after",
]

log = logging.getLogger("apps.payment.operations")


def refund_status_after() -> dt.timedelta:
    """PAYMENT_REFUND_STATUS_AFTER_S (900 s; refused below MIN_REFUND_STATUS_AFTER_S, apps/payment/settings.py);
    read at start by the worker and the API (both call the provider for refunds)."""
    return dt.timedelta(seconds=settings().refund_status_after_s)


_CLAIM = text(
    """
    WITH due AS (
        SELECT o.id FROM payment_operations o
        WHERE o.outcome = 'pending' AND o.next_attempt_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM payment_operations e
              WHERE e.payment_id = o.payment_id AND e.outcome = 'pending'
                AND (e.created_at, e.id) < (o.created_at, o.id))
        ORDER BY o.next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE payment_operations p
    SET next_attempt_at = now() + make_interval(secs => :lease), attempts = p.attempts + 1
    FROM due WHERE p.id = due.id
    RETURNING p.id
    """
)


async def claim_due(session: AsyncSession, *, limit: int, lease_s: float) -> list[uuid.UUID]:
    """Lease up to ``limit`` due operations (one per payment, oldest first) and commit the lease."""
    ids = list((await session.scalars(_CLAIM, {"limit": limit, "lease": lease_s})).all())
    await session.commit()
    return ids


@dataclass(frozen=True, slots=True)
class Call:
    """What to send the provider for one ledger row."""

    kind: str
    key: str
    amount: Decimal
    # ``amount`` as the provider takes it: in the minor unit the payment was authorized in (rules.sent_minor).
    minor: int
    currency: str
    order_id: uuid.UUID
    authorization: str | None
    request: dict[str, Any]
    asked_at: dt.datetime
    correlation_id: uuid.UUID | None = None  # the asker's (outbox/correlation.py)


async def execute(
    session: AsyncSession, provider: PaymentProvider, op_id: uuid.UUID, *, status_after: dt.timedelta | None = None
) -> str:
    """Call the provider for a pending operation and apply its answer; returns the outcome. With
    ``status_after`` (the worker), a refund asked longer ago than that is asked about, not asked again."""
    call = await _load_call(session, op_id)
    await session.commit()  # nothing is held while the provider is called
    if call is None:
        return SUCCEEDED
    # Under the id of whoever asked for it (the worker has none of its own): its lines and its payment.* event.
    with resumed(call.correlation_id):
        if status_after is not None and asks_refund_status(call.kind, call.asked_at, utc_now(), status_after):
            log.info("refund %s unanswered since %s: asking the provider what became of it", op_id, call.asked_at)
            result = await provider.refund_status(key=call.key)
        else:
            result = await _call_provider(provider, call)
        await apply_result(session, op_id, result)
    return result.outcome


@dataclass(frozen=True, slots=True)
class RefundRequestByHand:
    """POST /api/payments/{id}/refund, decoded: ``amount`` None refunds all that is refundable."""

    payment_id: uuid.UUID
    amount: Decimal | None
    reason: str
    client_key: str
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class RefundByHand:
    """A refund asked over HTTP as this request leaves it: the payment read again, and the refund's row in
    its ledger, answered or still awaited (``pending``); ``replayed``: its key had asked for it before."""

    payment: Payment
    operation_id: uuid.UUID
    pending: bool
    replayed: bool


async def refund_by_hand(
    payments: PaymentService,
    provider: PaymentProvider,
    ask: RefundRequestByHand,
    *,
    status_after: dt.timedelta | None,
) -> RefundByHand:
    """Ask for the refund, commit its pending ledger row, call the provider if this request holds its lease,
    and read the payment again; a refund the provider refused is a 409."""
    asked = await payments.request_refund(ask.payment_id, ask.amount, ask.reason, ask.client_key, ask.currency)
    await payments.session.commit()  # the pending ledger row exists before the provider hears of it
    if asked.call:  # else answered already, or another call of it is on its way: the row says which
        await execute(payments.session, provider, asked.id, status_after=status_after)
    payment = await payments.get(ask.payment_id)
    refund = next(op for op in payment.operations if op.id == asked.id)
    if refund.outcome not in (SUCCEEDED, PENDING):
        raise StateConflict("amount", f"the provider refused the refund: {refund.error}")
    return RefundByHand(payment, asked.id, pending=refund.outcome == PENDING, replayed=asked.replayed)


async def _load_call(session: AsyncSession, op_id: uuid.UUID) -> Call | None:
    row = (
        await session.execute(
            select(PaymentOperation, Payment)
            .join(Payment, Payment.id == PaymentOperation.payment_id)
            .where(PaymentOperation.id == op_id)
        )
    ).one_or_none()
    if row is None or row[0].outcome != PENDING:
        return None  # answered by someone else meanwhile
    op, payment = row
    return Call(
        op.kind,
        op.idempotency_key,
        op.amount,
        sent_minor(op.amount, payment),
        payment.currency,
        payment.order_id,
        payment.provider_reference,
        op.request,
        op.created_at,
        op.correlation_id,
    )


async def _call_provider(provider: PaymentProvider, call: Call) -> ProviderResult:
    if call.kind == AUTHORIZE:
        token = str(call.request.get("token", ""))
        return await provider.authorize(
            key=call.key, amount_minor=call.minor, currency=call.currency, token=token, reference=str(call.order_id)
        )
    if call.authorization is None:  # capture, void, refund all need the authorization
        return ProviderResult("failed", code="no_authorization")
    if call.kind == CAPTURE:
        return await provider.capture(key=call.key, authorization=call.authorization, amount_minor=call.minor)
    if call.kind == VOID:
        return await provider.void(key=call.key, authorization=call.authorization)
    return await provider.refund(key=call.key, authorization=call.authorization, amount_minor=call.minor)


async def apply_result(session: AsyncSession, op_id: uuid.UUID, result: ProviderResult) -> None:
    """Write the provider's answer, the payment's change and its event, in one transaction (commits)."""
    op = await session.scalar(
        select(PaymentOperation).where(PaymentOperation.id == op_id).execution_options(populate_existing=True)
    )
    if op is None:
        await session.rollback()
        return
    payment = await session.scalar(
        select(Payment).where(Payment.id == op.payment_id).with_for_update().execution_options(populate_existing=True)
    )
    await session.refresh(op, with_for_update=True)
    if payment is None or op.outcome != PENDING:
        await session.rollback()  # answered already (a concurrent executor with the same key)
        return
    now = utc_now()
    op.response = result.response
    if not result.known:
        op.error = f"no answer after {result.attempts} attempts: {result.code}"[:500]
        op.next_attempt_at = now + _backoff(op.attempts)
        await session.commit()
        return
    op.outcome = result.outcome
    op.completed_at = now
    op.error = None if result.outcome == SUCCEEDED else (result.code or result.outcome)[:500]
    event = _apply_to_payment(payment, op, result)
    payment.updated_at = now
    if event is not None:
        await add_event(session, payment.order_id, event)
    await session.flush()
    await PaymentService(session).compensate(payment)
    await session.commit()


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=retry_delay(attempts))


def _move(payment: Payment, status: str) -> bool:
    """Move to ``status`` if the state machine allows it (a stale answer changes nothing)."""
    if status not in TRANSITIONS[payment.status]:
        log.warning("payment %s: ignoring a move from %s to %s", payment.id, payment.status, status)
        return False
    payment.status = status
    return True


def _money(payment: Payment, amount: Decimal | None = None) -> dict[str, Any]:
    """The fields every payment.* event about an amount opens with (``amount``: the payment's, unless given)."""
    return {
        "payment_id": payment.id,
        "order_id": payment.order_id,
        "amount": payment.amount if amount is None else amount,
        "currency": payment.currency,
    }


def _apply_to_payment(payment: Payment, op: PaymentOperation, result: ProviderResult) -> Event | None:
    now = utc_now()
    ok = result.outcome == SUCCEEDED
    code = result.code or result.outcome
    ids = {"payment_id": payment.id, "order_id": payment.order_id}
    if op.kind == AUTHORIZE:
        if ok and _move(payment, AUTHORIZED):
            payment.provider_reference = result.reference
            return PaymentAuthorized(
                **_money(payment),
                provider=payment.provider,
                provider_reference=result.reference or "",
                authorized_at=now,
            )
        if not ok and _move(payment, DECLINED if result.outcome == OP_DECLINED else FAILED):
            payment.failure_code = code[:100]
            if payment.status == DECLINED:
                return PaymentDeclined(**_money(payment), decline_code=code, declined_at=now)
            return PaymentFailed(**_money(payment), reason=code, failed_at=now)
        return None
    if op.kind == CAPTURE:
        if ok and _move(payment, CAPTURED):
            payment.captured_amount = op.amount
            return PaymentCaptured(**_money(payment, op.amount), captured_at=now)
        return PaymentCaptureFailed(**ids, reason=code, failed_at=now)
    if op.kind == VOID:
        if ok and _move(payment, VOIDED):
            return PaymentVoided(**_money(payment), reason=payment.cancel_reason, voided_at=now)
        return PaymentVoidFailed(**ids, reason=code, failed_at=now)
    assert op.kind == REFUND
    if ok:
        refunded = payment.refunded_amount + op.amount
        if _move(payment, status_after_refund(payment.captured_amount, refunded)):
            payment.refunded_amount = refunded
            return PaymentRefunded(
                **ids,
                refund_id=op.id,
                amount=op.amount,
                refunded_total=refunded,
                captured_amount=payment.captured_amount,
                currency=payment.currency,
                status=payment.status,
                reason=op.reason,
                refunded_at=now,
            )
        return None
    return PaymentRefundFailed(**ids, refund_id=op.id, amount=op.amount, reason=code, failed_at=now)
