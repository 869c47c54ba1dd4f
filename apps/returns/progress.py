"""How a return moves on from other services' answers and from the clock: refunded or refund failed (the
payment service), restocked (the warehouse), completed once both are done (or once restocked, when there
is nothing to refund: the order was placed without payment), expired when nothing came.

Every function runs inside its caller's transaction (the consumer runtime's, the sweeper's or the API's)
and writes the return's rows with their return.* event; none commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload
from uuid_utils.compat import uuid7

from apps.common.models import utc_now
from apps.payment.rules import blocked_by
from apps.returns.events import (
    ReceivedLine,
    RefundedLine,
    RefundOrder,
    ReturnCompleted,
    ReturnExpired,
    ReturnLine,
    ReturnRefunded,
    ReturnRefundFailed,
    ReturnRefundRetryRequested,
)
from apps.returns.models import ReturnItem, ReturnRequest
from apps.returns.rules import (
    APPROVED,
    COMPLETED,
    EARLIER_REFUND_IDS,
    EXPIRED,
    REFUND_BLOCKED_BY,
    REFUND_ERROR,
    REFUND_FAILED,
    REFUND_ONLY,
    REFUND_RETRIES_UNBLOCKED,
    REFUND_RETRY_EVENT_ID,
    REFUND_RETRY_REQUESTED_AT,
    REFUND_RETRY_SETTLE_WITH,
    REFUNDED,
    RETRY_AWAITED,
    asks_again_on_its_own,
    refund_answer_applies,
    refund_asked_at,
    refund_settled,
    sellable,
    without,
)
from outbox.writer import add_event, new_event_id

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from decimal import Decimal

    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "about",
    "ask_refund_again",
    "complete_if_done",
    "expire",
    "expire_due",
    "received_lines",
    "refund_failed",
    "refund_order",
    "refunded",
    "request_lines",
    "restocked",
    "retry_unblocked",
]


def about(request: ReturnRequest) -> dict[str, Any]:
    """The fields every return.* event opens with."""
    return {
        "return_id": request.id,
        "return_number": request.return_number,
        "order_id": request.order_id,
        "customer_id": request.customer_id,
    }


def request_lines(request: ReturnRequest) -> list[ReturnLine]:
    return [
        ReturnLine(
            return_item_id=item.id,
            order_item_id=item.order_item_id,
            product_id=item.product_id,
            sku=item.product_sku,
            quantity=item.quantity_returned,
            unit_price=item.unit_price,
            refund_amount=item.refund_amount,
            reason=item.return_reason,
        )
        for item in request.items
    ]


def received_lines(request: ReturnRequest) -> list[ReceivedLine]:
    return [
        ReceivedLine(
            return_item_id=item.id,
            product_id=item.product_id,
            quantity_received=item.quantity_received,
            condition=item.condition_received,
            restock=_to_restock(item),
            refund_amount=item.refund_amount,
        )
        for item in request.items
    ]


def _to_restock(item: ReturnItem) -> bool:
    return item.quantity_received > 0 and sellable(item.condition_received)


async def _locked(session: AsyncSession, *where: Any) -> ReturnRequest | None:
    statement = (
        select(ReturnRequest)
        .where(*where)
        .options(selectinload(ReturnRequest.items))
        .with_for_update(of=ReturnRequest)
        .execution_options(populate_existing=True)
    )
    found: ReturnRequest | None = await session.scalar(statement)
    return found


async def refunded(session: AsyncSession, refund_id: uuid.UUID, amount: Decimal, at: dt.datetime) -> bool:
    """payment.refunded for a return's refund: refunded (then completed if nothing waits on the stock).
    False when the refund is not a return's (an order's cancellation) or was applied already."""
    request = await _locked(session, ReturnRequest.refund_id == refund_id)
    if request is None or not refund_answer_applies(request.status, _retry_awaited(request)):
        return False
    lines = [
        RefundedLine(product_id=i.product_id, quantity=_units(request, i), refund_amount=i.refund_amount)
        for i in request.items
        if _units(request, i)
    ]
    request.status, request.refunded_at, request.updated_at = REFUNDED, at, at
    # A retry's success: the earlier refusal no longer describes the return.
    request.metadata_ = without(request.metadata_, REFUND_ERROR, REFUND_BLOCKED_BY, *RETRY_AWAITED)
    event = ReturnRefunded(
        **about(request),
        refund_id=refund_id,
        amount=amount,
        currency=request.currency,
        items=lines,
        refunded_at=at,
    )
    await add_event(session, request.id, event)
    await complete_if_done(session, request, at)
    return True


def _units(request: ReturnRequest, item: ReturnItem) -> int:
    # A refund_only return (refunded on approval) for what was asked; the others for what came back.
    return item.quantity_returned if request.return_type == REFUND_ONLY else item.quantity_received


def _retry_awaited(request: ReturnRequest) -> str | None:
    found = request.metadata_.get(REFUND_RETRY_REQUESTED_AT)
    return None if found is None else str(found)


async def refund_failed(session: AsyncSession, refund_id: uuid.UUID, reason: str, at: dt.datetime) -> bool:
    """payment.refund_failed for a return's refund: the return stops at refund_failed for a person (again,
    with the new reason, when it answers a retry). Refused because refunds made by hand awaited the
    provider's answer: those are kept (REFUND_BLOCKED_BY), and the first of them to fail asks again on its
    own (retry_unblocked). False when the refund is no return's (a refund by hand, a cancellation's)."""
    request = await _locked(session, ReturnRequest.refund_id == refund_id)
    if request is None or not refund_answer_applies(request.status, _retry_awaited(request)):
        return False
    request.status, request.updated_at = REFUND_FAILED, at
    kept = without(request.metadata_, REFUND_BLOCKED_BY, *RETRY_AWAITED)
    blockers = {REFUND_BLOCKED_BY: [str(op_id) for op_id in found]} if (found := blocked_by(reason)) else {}
    request.metadata_ = {**kept, **blockers, REFUND_ERROR: reason[:255]}
    await add_event(
        session, request.id, ReturnRefundFailed(**about(request), refund_id=refund_id, reason=reason, failed_at=at)
    )
    return True


async def retry_unblocked(session: AsyncSession, order_id: uuid.UUID, failed: uuid.UUID, reason: str) -> int:
    """payment.refund_failed for refund ``failed`` that no return holds (made by hand): each return of the
    order refused because ``failed`` awaited the provider's answer, and not retried since, asks again now,
    as staff's POST /retry-refund would (rules.asks_again_on_its_own says why that is safe). Audited in the
    return's metadata (REFUND_RETRIES_UNBLOCKED, and refund_retry_requested_by). Returns how many."""
    statement = (
        select(ReturnRequest)
        .where(ReturnRequest.order_id == order_id, ReturnRequest.status == REFUND_FAILED)
        .order_by(ReturnRequest.created_at, ReturnRequest.id)
        .with_for_update(of=ReturnRequest)
        .execution_options(populate_existing=True)
    )
    asked = 0
    for request in (await session.scalars(statement)).all():
        if not asks_again_on_its_own(request.status, _retry_awaited(request), _blockers(request), failed):
            continue
        now = utc_now()
        audit = {"refund_id": str(failed), "reason": reason[:255], "asked_at": now.isoformat()}
        done = [*request.metadata_.get(REFUND_RETRIES_UNBLOCKED, []), audit]
        who = f"returns service: refund {failed} made by hand failed"
        await ask_refund_again(session, request, now, requested_by=who, audit={REFUND_RETRIES_UNBLOCKED: done})
        asked += 1
    return asked


def _blockers(request: ReturnRequest) -> list[uuid.UUID]:
    """What held the return's last refund back: as kept, or read from its refund_error (a refusal recorded
    before REFUND_BLOCKED_BY was kept; cut at 255 characters, which still holds two or three ids)."""
    kept = request.metadata_.get(REFUND_BLOCKED_BY)
    if kept is not None:
        return [uuid.UUID(op_id) for op_id in kept]
    return blocked_by(str(request.metadata_.get(REFUND_ERROR, "")))


def refund_order(request: ReturnRequest) -> RefundOrder:
    """The refund the return asks for, under a new refund id; with nothing to refund, a zero one that the
    row does not keep (no payment operation will bear its id; return.received v1 requires one)."""
    refund_id: uuid.UUID = uuid7()
    if request.no_refund_reason is None:
        request.refund_id = refund_id
    return RefundOrder(
        refund_id=refund_id,
        amount=request.total_refund_amount,
        currency=request.currency,
        reason=f"return {request.return_number}",
    )


async def ask_refund_again(
    session: AsyncSession,
    request: ReturnRequest,
    now: dt.datetime,
    *,
    requested_by: str | None,
    settle_with: Sequence[uuid.UUID] = (),
    audit: Mapping[str, Any] | None = None,
) -> None:
    """return.refund_retry_requested for a refund_failed return the caller locked and checked: a new refund
    id (the provider stored its refusal under the old one's key), the earlier ones passed on, awaited until
    an answer names it; ``audit``: metadata to record with it (who gave up a retry, what unblocked it)."""
    kept = request.metadata_
    earlier = [*kept.get(EARLIER_REFUND_IDS, []), *([str(request.refund_id)] * bool(request.refund_id))]
    asked_at = refund_asked_at(request.return_type, request.approved_at, request.processed_at)
    refund = refund_order(request)  # the new refund_id, on the row too
    event_id = new_event_id()
    request.metadata_ = {
        **without(kept, "refund_retry_requested_by", REFUND_RETRY_SETTLE_WITH, REFUND_BLOCKED_BY),
        **(audit or {}),
        EARLIER_REFUND_IDS: earlier,
        REFUND_RETRY_REQUESTED_AT: now.isoformat(),
        REFUND_RETRY_EVENT_ID: str(event_id),
        **({"refund_retry_requested_by": requested_by} if requested_by else {}),
        **({REFUND_RETRY_SETTLE_WITH: [str(op_id) for op_id in settle_with]} if settle_with else {}),
    }
    request.updated_at = now
    event = ReturnRefundRetryRequested(
        **about(request),
        refund=refund,
        earlier_refund_ids=[uuid.UUID(refund_id) for refund_id in earlier],
        refund_asked_at=asked_at or request.created_at,
        requested_at=now,
        settle_with=list(settle_with),
    )
    await add_event(session, request.id, event, event_id=event_id)


async def restocked(
    session: AsyncSession, return_id: uuid.UUID, items: Sequence[tuple[uuid.UUID, uuid.UUID]], at: dt.datetime
) -> None:
    """inventory.restocked: each (return item, warehouse) is back on hand; completed if refunded too."""
    request = await _locked(session, ReturnRequest.id == return_id)
    if request is None:
        return
    warehouses = dict(items)
    for item in request.items:
        if item.id in warehouses and not item.restocked:
            item.restocked, item.restocked_at, item.warehouse_id, item.updated_at = True, at, warehouses[item.id], at
    await complete_if_done(session, request, at)


async def complete_if_done(session: AsyncSession, request: ReturnRequest, at: dt.datetime) -> None:
    """Completed once the refund is settled (refunded, or none to ask for) and every sellable unit is back."""
    waiting = [item for item in request.items if _to_restock(item) and not item.restocked]
    if not refund_settled(request.status, request.return_type, request.no_refund_reason) or waiting:
        return
    request.status, request.completed_at, request.updated_at = COMPLETED, at, at
    await add_event(session, request.id, ReturnCompleted(**about(request), completed_at=at))


async def expire(session: AsyncSession, request: ReturnRequest, at: dt.datetime) -> None:
    request.status, request.updated_at = EXPIRED, at
    await add_event(session, request.id, ReturnExpired(**about(request), expired_at=at))


async def expire_due(session: AsyncSession, now: dt.datetime, limit: int) -> int:
    """Expire up to ``limit`` requests past their expires_at (claimed FOR UPDATE SKIP LOCKED)."""
    statement = (
        select(ReturnRequest)
        .where(ReturnRequest.status.in_(["requested", APPROVED]), ReturnRequest.expires_at <= now)
        .order_by(ReturnRequest.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    due = list((await session.scalars(statement)).all())
    for request in due:
        await expire(session, request, now)
    return len(due)
