"""Request and response bodies of the returns API, and the mapper from a return to its response.

Money is a decimal string ("19.90"); refund amounts are computed by the service, never sent by a client.
"""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from apps.common.fields import FREE_TEXT_PATTERN, LINE_PATTERN, MAX_INT_ID
from apps.common.responses import from_row
from apps.returns.models import ReturnRequest
from apps.returns.rules import (
    CONDITIONS,
    MAX_SETTLE_WITH,
    REASONS,
    REFUND_ERROR,
    REFUND_RETRY_REQUESTED_AT,
    REJECTION_REASON,
    RETURN_TYPES,
)

__all__ = [
    "ApproveRequest",
    "ReceiveRequest",
    "RejectRequest",
    "RetryRefundRequest",
    "ReturnCreate",
    "ReturnOut",
    "ReturnPage",
    "to_return_out",
]

MAX_LINES = 100
# order_items.id is a BIGINT identity; capped where a JSON number is still exact (MAX_INT_ID).
OrderItemId = Annotated[int, Meta(ge=1, le=MAX_INT_ID, description="the order line's id (GET /api/orders/{id})")]
Quantity = Annotated[int, Meta(ge=1, le=1000, description="units, 1..1000")]
Received = Annotated[int, Meta(ge=0, le=1000, description="units that arrived, 0..the units asked back")]
Reason = Literal[
    "damaged_in_transit",
    "defective",
    "not_as_described",
    "wrong_item",
    "changed_mind",
    "no_longer_needed",
    "too_late",
    "other",
]
Condition = Literal["new", "opened", "used", "damaged", "defective"]
ReturnType = Literal["refund", "refund_only"]
Person = Annotated[str, Meta(min_length=1, max_length=255, pattern=LINE_PATTERN, examples=["agent@example.com"])]
Text = Annotated[str, Meta(max_length=2000, pattern=FREE_TEXT_PATTERN)]
RefundError = Annotated[
    str | None,
    Meta(
        description="why the payment service refused the refund (status refund_failed: a person follows up); "
        "null otherwise",
        examples=["expired_or_canceled_card"],
    ),
]
RejectionReason = Annotated[
    str | None, Meta(description="why staff rejected the return (status rejected); null otherwise", examples=["late"])
]
RetryRequestedAt = Annotated[
    dt.datetime | None,
    Meta(
        description="when staff asked to retry the refused refund (POST /api/returns/{id}/retry-refund), while "
        "the payment service's answer is awaited; null otherwise"
    ),
]
assert set(Reason.__args__) == set(REASONS)  # type: ignore[attr-defined]
assert set(Condition.__args__) == set(CONDITIONS)  # type: ignore[attr-defined]
assert set(ReturnType.__args__) == set(RETURN_TYPES)  # type: ignore[attr-defined]


class ReturnItemIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    order_item_id: OrderItemId
    quantity: Quantity
    reason: Reason


class ReturnCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/returns: units of a delivered order's lines to send back (or, refund_only, to keep)."""

    order_id: uuid.UUID
    items: Annotated[list[ReturnItemIn], Meta(min_length=1, max_length=MAX_LINES)]
    return_type: ReturnType = "refund"
    description: Text | None = None


# Refunds made by hand that paid a return back, named when its refund is asked (approve of a refund_only
# return, receive): they settle it and the provider is not asked, checked as retry-refund's settle_with.
SettleWithAtOnce = Annotated[
    list[uuid.UUID],
    Meta(
        min_length=1,
        max_length=MAX_SETTLE_WITH,
        description="refunds made by hand (POST /api/payments/{id}/refund: its refund.id) that already paid "
        "this return back: its refund is settled by them (each refund's amount counts once over all returns) and "
        "the provider is not asked. Only where the return asks for its refund (receive; approve of a refund_only "
        "return): 422 elsewhere, or for one that is no refund by hand of the order's payment; 409 for one not "
        "gone through or refunds that do not cover the return; the payment service decides again (a refusal "
        "then is the return's refund_error, refund_failed)",
    ),
]


class ApproveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Approve; the refund's flags default to the policy's (shipping back on the merchant's fault, tax back)."""

    approved_by: Person | None = None
    refund_shipping: bool | None = None
    refund_tax: bool | None = None
    settle_with: SettleWithAtOnce | None = None


class RejectRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=100, pattern=LINE_PATTERN, examples=["outside policy"])]
    rejected_by: Person | None = None


class RetryRefundRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Ask the payment service again for a refund_failed return's refund (the whole refund, a new refund_id);
    or, with ``settle_with``, settle it by refunds already made by hand; ``abandon_awaited`` gives up a retry
    still awaiting its answer (audited) and replaces it by this one."""

    requested_by: Person | None = None
    settle_with: (
        Annotated[
            list[uuid.UUID],
            Meta(
                min_length=1,
                max_length=MAX_SETTLE_WITH,
                description="refunds made by hand (POST /api/payments/{id}/refund: its refund.id) that paid this "
                "return back, at any time, before the return asked too: they settle it (each refund's amount "
                "counts once over all returns) and the provider is not asked. 422 for one that is no refund by "
                "hand of the order's payment, 409 for one not gone through or refunds that do not cover the "
                "return; the payment service decides again (a refusal then is the return's refund_error)",
            ),
        ]
        | None
    ) = None
    abandon_awaited: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=255,
                pattern=LINE_PATTERN,
                description="why the awaited retry is given up (e.g. its dead letter was acknowledged: it can "
                "never be answered); with requested_by (422 without). The new retry replaces it: the payment "
                "service records the abandoned one as never asked, so its event coming later asks nothing, and "
                "if it was applied first this retry sees it (never two refunds). Kept in the return's "
                "metadata (refund_retries_abandoned: who, why, when, which). 422 when no retry is awaited",
                examples=["its dead letter was acknowledged"],
            ),
        ]
        | None
    ) = None


class ReceivedItemIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    return_item_id: uuid.UUID
    quantity_received: Received
    condition: Condition


class ReceiveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What arrived; an item not listed arrived with 0 units. Refunds what arrived, restocks what is sellable."""

    items: Annotated[list[ReceivedItemIn], Meta(min_length=1, max_length=MAX_LINES)]
    received_by: Person | None = None
    tracking_number: Annotated[str, Meta(min_length=1, max_length=100, pattern=LINE_PATTERN)] | None = None
    settle_with: SettleWithAtOnce | None = None


class ReturnItemOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    order_item_id: int
    product_id: uuid.UUID
    product_sku: str
    product_name: str
    quantity_returned: int
    quantity_received: int
    return_reason: str | None
    condition_received: str | None
    unit_price: Decimal
    refund_amount: Decimal
    restocked: bool
    restocked_at: dt.datetime | None
    warehouse_id: uuid.UUID | None


class ReturnOut(msgspec.Struct, kw_only=True):
    """A return with its items; every field is the return_requests column of that name, but
    ``refund_error``, ``rejection_reason`` and ``refund_retry_requested_at``, kept in the row's metadata (by
    the payment service's answer, by the rejection, by a refund retry)."""

    id: uuid.UUID
    return_number: str
    order_id: uuid.UUID
    customer_id: str
    status: str
    return_type: str
    reason: str
    description: str | None
    currency: str
    total_refund_amount: Decimal
    # Why nothing is refunded (the order was placed without payment); null when a refund is due.
    no_refund_reason: str | None
    refund_shipping: bool
    refund_tax: bool
    approved_by: str | None
    approved_at: dt.datetime | None
    processed_by: str | None
    processed_at: dt.datetime | None
    return_tracking_number: str | None
    refund_id: uuid.UUID | None
    refunded_at: dt.datetime | None
    refund_error: RefundError = None
    rejection_reason: RejectionReason = None
    refund_retry_requested_at: RetryRequestedAt = None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    completed_at: dt.datetime | None
    items: list[ReturnItemOut]


class ReturnPage(msgspec.Struct, kw_only=True):
    items: list[ReturnOut]
    next_cursor: str | None


def to_return_out(request: ReturnRequest) -> ReturnOut:
    """The return's columns and its items (loaded with it), and the reasons kept in its metadata."""
    kept = request.metadata_
    retry_at = kept.get(REFUND_RETRY_REQUESTED_AT)
    return from_row(
        ReturnOut,
        request,
        refund_error=kept.get(REFUND_ERROR),
        rejection_reason=kept.get(REJECTION_REASON),
        refund_retry_requested_at=None if retry_at is None else dt.datetime.fromisoformat(retry_at),
    )
