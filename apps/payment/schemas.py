"""Request and response bodies of the payment API. Money is a decimal string ("19.90")."""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

import msgspec
from msgspec import Meta

from apps.common.fields import LINE_PATTERN
from apps.common.pricing import ZERO
from apps.common.responses import from_row
from apps.payment.models import Payment
from apps.payment.rules import AMOUNT_PATTERN, CURRENCY_PATTERN, MAX_AMOUNT, RETURN_ID, counted_for_returns, is_by_hand

__all__ = ["OperationOut", "PaymentOut", "RefundOut", "RefundRequest", "to_payment_out"]


class RefundRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/payments/{id}/refund: give back ``amount`` (all that is refundable when absent)."""

    reason: Annotated[str, Meta(min_length=1, max_length=255, pattern=LINE_PATTERN, examples=["returned"])]
    amount: (
        Annotated[
            str,
            Meta(
                pattern=AMOUNT_PATTERN,
                description=f"decimal string above 0 and at most {MAX_AMOUNT}, 2 decimals at most and no more "
                "than the payment's currency has (none for JPY: 422 otherwise); at most what was captured and not "
                "refunded yet",
                examples=["19.90"],
            ),
        ]
        | None
    ) = None
    # The currency the caller means (checked against the payment's: 422 if another); absent: the payment's.
    currency: Annotated[str, Meta(pattern=CURRENCY_PATTERN, examples=["USD"])] | None = None


class OperationOut(msgspec.Struct, kw_only=True):
    """One provider operation of the payment's ledger; outcome ``pending`` while its answer is awaited."""

    id: uuid.UUID
    kind: str
    amount: Decimal
    outcome: str
    reason: str | None
    error: str | None
    attempts: int
    created_at: dt.datetime
    completed_at: dt.datetime | None
    return_id: Annotated[
        uuid.UUID | None,
        Meta(description="a refund: the return it is (or settles, with 0.00) the refund of; null otherwise"),
    ] = None
    by_hand: Annotated[bool, Meta(description="a refund asked over POST /api/payments/{id}/refund")] = False
    counted_for_returns: Annotated[
        Decimal,
        Meta(
            description="a refund by hand: how much of it settles returns already (a retry-refund's settle_with, "
            "or one made after the return asked); what is left may settle another"
        ),
    ] = ZERO


class PaymentOut(msgspec.Struct, kw_only=True):
    """A payment with its ledger of provider operations, oldest first. Every field is the payments row's
    column of that name (apps.common.responses.from_row maps it, operations included)."""

    id: uuid.UUID
    order_id: uuid.UUID
    amount: Decimal
    currency: str
    status: str
    provider: str
    provider_reference: str | None
    payment_method_type: str
    captured_amount: Decimal
    refunded_amount: Decimal
    failure_code: str | None
    cancel_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    operations: list[OperationOut]


class RefundOut(msgspec.Struct, kw_only=True):
    """The refund operation (``pending`` if the provider's answer is still awaited) and the payment after it."""

    refund: OperationOut
    payment: PaymentOut


def to_payment_out(payment: Payment) -> PaymentOut:
    """The payment with its ledger (loaded with it), each refund saying whose it is and, by hand, how much
    of it returns counted."""
    counted = counted_for_returns(op.request for op in payment.operations)
    operations = [
        from_row(
            OperationOut,
            op,
            return_id=op.request.get(RETURN_ID),
            by_hand=is_by_hand(op.request),
            counted_for_returns=counted.get(str(op.id), ZERO),
        )
        for op in payment.operations
    ]
    return from_row(PaymentOut, payment, operations=operations)
