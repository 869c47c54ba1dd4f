"""PaymentService: what the order saga and the HTTP API ask of payments, written down as ledger rows.

Asking never calls the provider. Each command writes the payment row and a PENDING ledger operation
(payment_operations, with the idempotency key the provider will see) and, where a request is refused,
the refusal event, all in the caller's transaction: the consumer runtime's (with the inbox row) or the
HTTP request's. The provider is called afterwards, outside any transaction, by apps/payment/operations.py
(the worker, or the refund endpoint inline), which writes the answer, the payment's new status and its
payment.* event in one transaction. A crash in between leaves a pending row, retried with the same key.

Concurrency: every command locks the payment row (SELECT ... FOR UPDATE) before deciding, so two commands
on one payment decide one after the other on the state the first one left.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import selectinload
from uuid_utils.compat import uuid7

from apps.common.errors import FieldProblem, NotFound, StateConflict
from apps.common.models import utc_now
from apps.common.pricing import check_places, minor_exponent
from apps.payment.events import PaymentCaptureFailed
from apps.payment.models import Payment, PaymentOperation
from apps.payment.rules import (
    AUTHORIZE,
    BY_HAND,
    CAPTURE,
    FINAL,
    PENDING,
    REFUND,
    RETURN_ID,
    check_capture,
    check_currency,
    check_refund,
    compensation,
    to_minor,
)
from outbox.correlation import current_uuid
from outbox.writer import add_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AuthorizationRequest", "IdempotencyKeyReused", "PaymentService", "RefundAsked"]

# An operation the API executes itself is leased to it for this long before the worker may retry it.
INLINE_LEASE_S = 30.0
_LEASE_IF_DUE = text(
    "UPDATE payment_operations SET next_attempt_at = now() + make_interval(secs => :lease), "
    "attempts = attempts + 1 WHERE id = :id AND outcome = 'pending' AND next_attempt_at <= now() RETURNING id"
)


@dataclass(frozen=True, slots=True)
class RefundAsked:
    """A refund asked over HTTP: its ledger id, and whether this request holds its lease and so calls the
    provider now (``call``); otherwise it is answered, or someone else's call is on its way. ``replayed``:
    the key had asked for it before (the answer says so, as a repeated order or checkout does)."""

    id: uuid.UUID
    call: bool
    replayed: bool = False


CENT = Decimal("0.01")


class IdempotencyKeyReused(FieldProblem):
    """The Idempotency-Key was used before for a different request: 422 (as the IETF draft says)."""

    status_code = 422


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Authorize ``amount`` for an order with a provider token; ``key`` makes it one payment however often."""

    order_id: uuid.UUID
    amount: Decimal
    currency: str
    method_type: str
    token: str
    key: str
    provider: str


class PaymentService:
    """Payments and their ledger; never commits (the caller owns the transaction), never calls out."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- the saga's requests (consumer) ------------------------------------------------------------

    async def request_authorization(self, request: AuthorizationRequest) -> uuid.UUID:
        """The payment for this key: created pending with its authorize operation, or the one that exists."""
        now = utc_now()
        payment_id: uuid.UUID = uuid7()
        inserted = await self.session.scalar(
            pg_insert(Payment)
            .values(
                id=payment_id,
                order_id=request.order_id,
                amount=request.amount,
                currency=request.currency.upper(),
                # Fixed now: the worker sends exactly this, and every capture and refund in this unit.
                amount_minor=to_minor(request.amount, request.currency),
                minor_exponent=minor_exponent(request.currency),
                status=PENDING,
                provider=request.provider,
                payment_method_type=request.method_type,
                idempotency_key=request.key,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[Payment.idempotency_key])
            .returning(Payment.id)
        )
        if inserted is None:
            existing = await self.session.scalar(select(Payment.id).where(Payment.idempotency_key == request.key))
            assert existing is not None  # the conflict was on this key
            return existing
        # The token travels in the operation's request: the worker sends exactly this, again if need be.
        await self._add_operation(payment_id, AUTHORIZE, request.key, request.amount, {"token": request.token}, now=now)
        return payment_id

    async def request_capture(self, order_id: uuid.UUID, amount: Decimal | None) -> None:
        """Queue the capture of the order's authorized payment, or publish why it cannot be captured."""
        payments = await self._lock_for_order(order_id)
        payment = next((p for p in reversed(payments) if p.status not in FINAL), None)
        if payment is None:
            await self._capture_refused(None, order_id, "no_authorized_payment")
            return
        try:
            if amount is not None:  # the whole authorization is sent as the integer it was (rules.sent_minor)
                check_places("amount", amount, payment.currency)
            amount = check_capture(payment.status, payment.amount, amount)
        except FieldProblem as exc:
            await self._capture_refused(payment.id, order_id, exc.message)
            return
        if payment.cancel_requested_at is not None:
            await self._capture_refused(payment.id, order_id, "payment_cancelled")
            return
        await self._add_operation(payment.id, CAPTURE, f"{payment.id}:capture", amount, {})

    async def request_cancel(self, order_id: uuid.UUID, reason: str) -> None:
        """Mark every payment of the order to be undone, and queue what undoes each one now (if anything)."""
        now = utc_now()
        for payment in await self._lock_for_order(order_id):
            if payment.cancel_requested_at is None:
                payment.cancel_requested_at = now
                payment.cancel_reason = reason[:100]
                payment.updated_at = now
            await self.compensate(payment)
        await self.session.flush()

    async def compensate(self, payment: Payment) -> None:
        """Queue the void or refund a cancelled payment needs, once no other operation awaits an answer."""
        if payment.cancel_requested_at is None:
            return
        undo = compensation(
            payment.status,
            payment.amount,
            payment.captured_amount,
            payment.refunded_amount,
            operation_in_flight=await self._has_pending(payment.id),
        )
        if undo is not None:
            request = {"reason": payment.cancel_reason}
            await self._add_operation(payment.id, undo.kind, f"{payment.id}:{undo.kind}:cancel", undo.amount, request)

    # --- refunds asked over HTTP ---------------------------------------------------------------------

    async def request_refund(
        self, payment_id: uuid.UUID, amount: Decimal | None, reason: str, client_key: str, currency: str | None = None
    ) -> RefundAsked:
        """The refund operation for this client key (the existing one on a retry), leased to the caller if
        it is new, or pending and held by no one (``call``); ``currency``, when given, must be the
        payment's (422)."""
        payment = await self._lock(payment_id)
        if currency is not None:
            check_currency(currency, payment.currency)
        if amount is not None:
            check_places("amount", amount, payment.currency)
        key = f"{payment.id}:refund:{client_key}"
        # Compared on a retry with the same key: "10.5" and "10.50" are the same request.
        asked = {BY_HAND: None if amount is None else str(amount.quantize(CENT)), "reason": reason}
        existing = await self.session.scalar(select(PaymentOperation).where(PaymentOperation.idempotency_key == key))
        if existing is not None:
            return await self._refund_asked_again(existing, asked)
        await self._refuse_while_a_return_refund_awaits(payment.id)
        pending = await self.session.scalar(
            select(func.coalesce(func.sum(PaymentOperation.amount), 0)).where(
                PaymentOperation.payment_id == payment.id,
                PaymentOperation.kind == REFUND,
                PaymentOperation.outcome == PENDING,
            )
        )
        refund = check_refund(
            payment.status, payment.captured_amount, payment.refunded_amount, Decimal(pending or 0), amount
        )
        now = utc_now()
        op_id = await self._add_operation(
            payment.id, REFUND, key, refund, asked, now=now, leased_until=now + dt.timedelta(seconds=INLINE_LEASE_S)
        )
        return RefundAsked(op_id, call=True)  # new, and leased to this request (the payment's lock held)

    async def _refund_asked_again(self, existing: PaymentOperation, asked: dict[str, str | None]) -> RefundAsked:
        """A retry with the key of an existing refund: answered as that refund, or a 422 if it asked otherwise."""
        if {k: existing.request.get(k) for k in asked} != asked:
            raise IdempotencyKeyReused("Idempotency-Key", "this key was used for a different refund", source="header")
        if existing.outcome != PENDING:
            return RefundAsked(existing.id, call=False, replayed=True)
        # Leased as the worker's claim does, and only if no one holds it: a call of the worker (or of
        # `just refunds fail`, or of a retry of this request) may be on its way, and the worker may be
        # asking the provider whether the refund exists; a POST of ours crossing a "no" would make the
        # refund after the ledger failed it.
        leased = await self.session.scalar(_LEASE_IF_DUE, {"id": existing.id, "lease": INLINE_LEASE_S})
        return RefundAsked(existing.id, call=leased is not None, replayed=True)

    async def _refuse_while_a_return_refund_awaits(self, payment_id: uuid.UUID) -> None:
        """A return's refund awaiting the provider (its first, or staff's retry): refunding that return by
        hand now would refund it twice if both go through, and nothing here can tell whether this refund
        is that return's. Refused until it is answered; a retry settles it by hand if it failed."""
        awaited = (
            await self.session.execute(
                select(PaymentOperation.id, PaymentOperation.request[RETURN_ID].astext)
                .where(
                    PaymentOperation.payment_id == payment_id,
                    PaymentOperation.kind == REFUND,
                    PaymentOperation.outcome == PENDING,
                    PaymentOperation.request.has_key(RETURN_ID),
                )
                .limit(1)
            )
        ).first()
        if awaited is not None:
            raise StateConflict(
                "status",
                f"refund {awaited[0]} of return {awaited[1]} awaits the provider's answer: refund by hand once "
                f"it is answered (GET /api/returns/{awaited[1]}): if it went through, this would refund the "
                "return twice; if it failed, a retry-refund with settle_with naming your refund settles it",
            )

    # --- reads -------------------------------------------------------------------------------------

    async def get(self, payment_id: uuid.UUID) -> Payment:
        return await self._by_id(payment_id, lock=False)

    async def for_order(self, order_id: uuid.UUID) -> Sequence[Payment]:
        return await self._of_order(order_id, lock=False)

    # --- helpers -------------------------------------------------------------------------------------

    async def _lock(self, payment_id: uuid.UUID) -> Payment:
        return await self._by_id(payment_id, lock=True)

    async def _lock_for_order(self, order_id: uuid.UUID) -> Sequence[Payment]:
        return await self._of_order(order_id, lock=True)

    async def _by_id(self, payment_id: uuid.UUID, *, lock: bool) -> Payment:
        payment = await self.session.scalar(_fresh(select(Payment).where(Payment.id == payment_id), lock=lock))
        if payment is None:
            raise NotFound(f"payment {payment_id} not found")
        return payment

    async def _of_order(self, order_id: uuid.UUID, *, lock: bool) -> Sequence[Payment]:
        """The order's payments, oldest first."""
        statement = select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_at, Payment.id)
        return (await self.session.scalars(_fresh(statement, lock=lock))).all()

    async def _has_pending(self, payment_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(PaymentOperation.id)
            .where(PaymentOperation.payment_id == payment_id, PaymentOperation.outcome == PENDING)
            .limit(1)
        )
        return found is not None

    async def _add_operation(
        self,
        payment_id: uuid.UUID,
        kind: str,
        key: str,
        amount: Decimal,
        request: dict[str, Any],
        *,
        now: dt.datetime | None = None,
        leased_until: dt.datetime | None = None,
    ) -> uuid.UUID:
        """A pending ledger row (nothing if one with this provider key exists: a repeated command)."""
        now = now or utc_now()
        op_id: uuid.UUID = uuid7()
        inserted = await self.session.scalar(
            pg_insert(PaymentOperation)
            .values(
                id=op_id,
                payment_id=payment_id,
                kind=kind,
                idempotency_key=key,
                amount=amount,
                outcome=PENDING,
                reason=request.get("reason"),
                request=request,
                attempts=1 if leased_until else 0,
                next_attempt_at=leased_until or now,
                created_at=now,
                correlation_id=current_uuid(),
            )
            .on_conflict_do_nothing(index_elements=[PaymentOperation.idempotency_key])
            .returning(PaymentOperation.id)
        )
        if inserted is None:
            existing = await self.session.scalar(
                select(PaymentOperation.id).where(PaymentOperation.idempotency_key == key)
            )
            if existing is None:  # pragma: no cover - the conflict was on this key
                raise StateConflict("idempotency_key", "the operation conflicts with another")
            return existing
        return op_id

    async def _capture_refused(self, payment_id: uuid.UUID | None, order_id: uuid.UUID, reason: str) -> None:
        refused = PaymentCaptureFailed(payment_id=payment_id, order_id=order_id, reason=reason, failed_at=utc_now())
        await add_event(self.session, order_id, refused)


def _fresh(statement: Select[tuple[Payment]], *, lock: bool) -> Select[tuple[Payment]]:
    """Read from the database even if the session holds the rows (populate_existing): locked FOR UPDATE
    for a write, or with their operations for an answer."""
    statement = statement.with_for_update() if lock else statement.options(selectinload(Payment.operations))
    return statement.execution_options(populate_existing=True)
