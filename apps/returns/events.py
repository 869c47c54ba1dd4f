"""Events the returns service publishes (topic commerce.return, aggregate "return", key = the return id).

The payment service refunds on ``return.received`` (and on ``return.approved`` of a refund_only return):
both carry a ``refund`` whose ``refund_id`` becomes the id of the payment ledger's refund operation, so
``payment.refunded`` / ``payment.refund_failed`` (which name it) find their way back to the return. The
warehouse restocks the sellable units of ``return.received`` and answers ``inventory.restocked``.
``return.refunded`` is what projections (customer stats, analytics) net out of what was spent.
A return with nothing to refund (an order placed without payment) asks the payment service for nothing:
return.received v2 says why in ``no_refund_reason``, and a refund_only approval carries no ``refund``.
A refund the payment service refused (return.refund_failed) is asked again by staff:
``return.refund_retry_requested`` carries a NEW ``refund_id`` (the provider keeps its refusal under the old
one's key), the ids asked before, and when the return first asked; its answer is again payment.refunded or
payment.refund_failed naming the new id (apps/payment/returns.py).
"""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import uuid
from decimal import Decimal

import msgspec

from outbox.events import Event, event

__all__ = [
    "ReceivedLine",
    "RefundOrder",
    "RefundedLine",
    "ReturnApproved",
    "ReturnApprovedV1",
    "ReturnCompleted",
    "ReturnExpired",
    "ReturnLine",
    "ReturnReceived",
    "ReturnReceivedV1",
    "ReturnReceivedV2",
    "ReturnRefundFailed",
    "ReturnRefundRetryRequested",
    "ReturnRefundRetryRequestedV1",
    "ReturnRefunded",
    "ReturnRejected",
    "ReturnRequested",
]


class ReturnLine(msgspec.Struct, frozen=True, kw_only=True):
    """Units of one order line asked back, and what they refund."""

    return_item_id: uuid.UUID
    order_item_id: int
    product_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: Decimal
    refund_amount: Decimal
    reason: str | None = None


class ReceivedLine(msgspec.Struct, frozen=True, kw_only=True):
    """What arrived of one return item; ``restock``: in a condition that goes back to stock."""

    return_item_id: uuid.UUID
    product_id: uuid.UUID
    quantity_received: int
    condition: str | None = None
    restock: bool
    refund_amount: Decimal


class RefundOrder(msgspec.Struct, frozen=True, kw_only=True):
    """What the payment service is asked to give back for the order: ``refund_id`` is the id its ledger's
    refund operation takes (one refund per return, however often the event comes)."""

    refund_id: uuid.UUID
    amount: Decimal
    currency: str
    reason: str


class _AboutReturn(Event, frozen=True, kw_only=True):
    # The fields every return.* event opens with (not an event of its own).
    return_id: uuid.UUID
    return_number: str
    order_id: uuid.UUID
    customer_id: str


@event("return.requested", version=1, aggregate="return")
class ReturnRequested(_AboutReturn, frozen=True, kw_only=True):
    """A customer asked to return units of a delivered order; nothing is refunded yet."""

    return_type: str
    currency: str
    total_refund_amount: Decimal
    items: list[ReturnLine]
    requested_at: dt.datetime
    expires_at: dt.datetime | None = None


@event("return.approved", version=1, aggregate="return")
class ReturnApprovedV1(_AboutReturn, frozen=True, kw_only=True):
    """The return was accepted. A refund_only return carries its ``refund`` (nothing ships back);
    otherwise ``refund`` is absent and the refund follows the items' receipt."""

    return_type: str
    total_refund_amount: Decimal
    approved_at: dt.datetime
    refund: RefundOrder | None = None

    def named_refunds(self) -> list[uuid.UUID]:
        """The refunds made by hand that staff named as this return's money (none before v2)."""
        return []


@event("return.approved", version=2, aggregate="return", min_reader_version=2)
class ReturnApproved(ReturnApprovedV1, frozen=True, kw_only=True):
    """v2 may name the refunds made by hand that paid a refund_only return back (``settle_with``, as
    return.refund_retry_requested v2): the payment service settles ``refund`` by them, or refuses it naming
    the one at fault; the provider is not asked. Empty: as v1. A consumer on v1 code would ignore them and ask
    the provider (a second refund): min_reader_version=2 makes it dead-letter the record instead, redriven
    after its deploy."""

    settle_with: list[uuid.UUID] = msgspec.field(default_factory=list)

    def named_refunds(self) -> list[uuid.UUID]:
        return self.settle_with


@event("return.rejected", version=1, aggregate="return")
class ReturnRejected(_AboutReturn, frozen=True, kw_only=True):
    """The return was refused; nothing is refunded."""

    reason: str
    rejected_at: dt.datetime


@event("return.received", version=1, aggregate="return")
class ReturnReceivedV1(_AboutReturn, frozen=True, kw_only=True):
    """The items came back (per item: quantity and condition): refund ``refund``, restock what may be."""

    items: list[ReceivedLine]
    refund: RefundOrder
    received_at: dt.datetime

    def asks_refund(self) -> bool:
        """Whether the payment service is to refund ``refund`` (every v1 return asked for one)."""
        return True

    def named_refunds(self) -> list[uuid.UUID]:
        """The refunds made by hand that staff named as this return's money (none before v3)."""
        return []


@event("return.received", version=2, aggregate="return", min_reader_version=2)
class ReturnReceivedV2(ReturnReceivedV1, frozen=True, kw_only=True):
    """v2 may say that nothing is refunded and why (``no_refund_reason``: the order was placed without
    payment). ``refund`` is then a zero refund that names no payment operation (v1 requires the field),
    and the payment service writes nothing; the warehouse restocks as for any return. A v1 reader would
    refund that zero refund: min_reader_version=2."""

    no_refund_reason: str | None = None

    def asks_refund(self) -> bool:
        return self.no_refund_reason is None


@event("return.received", version=3, aggregate="return", min_reader_version=3)
class ReturnReceived(ReturnReceivedV2, frozen=True, kw_only=True):
    """v3 may name the refunds made by hand that paid the return back before it asked (``settle_with``,
    as return.refund_retry_requested v2): the payment service settles ``refund`` by them, or refuses it
    naming the one at fault; the provider is not asked. Empty: as v2. A consumer on v2 code would ignore
    them and ask the provider (a second refund): min_reader_version=3 makes it dead-letter the record
    instead, redriven after its deploy."""

    settle_with: list[uuid.UUID] = msgspec.field(default_factory=list)

    def named_refunds(self) -> list[uuid.UUID]:
        return self.settle_with


class RefundedLine(msgspec.Struct, frozen=True, kw_only=True):
    """Units of one product whose money went back."""

    product_id: uuid.UUID
    quantity: int
    refund_amount: Decimal


@event("return.refunded", version=1, aggregate="return")
class ReturnRefunded(_AboutReturn, frozen=True, kw_only=True):
    """The payment service refunded ``amount`` for the return (its ``payment.refunded`` arrived)."""

    refund_id: uuid.UUID
    amount: Decimal
    currency: str
    items: list[RefundedLine]
    refunded_at: dt.datetime


@event("return.refund_failed", version=1, aggregate="return")
class ReturnRefundFailed(_AboutReturn, frozen=True, kw_only=True):
    """The payment service could not refund (``reason`` is its code); the return waits for a person."""

    refund_id: uuid.UUID
    reason: str
    failed_at: dt.datetime


@event("return.refund_retry_requested", version=1, aggregate="return")
class ReturnRefundRetryRequestedV1(_AboutReturn, frozen=True, kw_only=True):
    """Staff asked the payment service to try a refused refund again: ``refund`` is the whole refund once
    more under a new ``refund_id``; ``earlier_refund_ids`` are the ones refused before (oldest first), and
    ``refund_asked_at`` when the return first asked. A refund made by hand since then (the payments API)
    that covers ``refund.amount`` settles it instead: the same return is never refunded twice."""

    refund: RefundOrder
    earlier_refund_ids: list[uuid.UUID]
    refund_asked_at: dt.datetime
    requested_at: dt.datetime

    def named_refunds(self) -> list[uuid.UUID]:
        """The refunds made by hand that staff named to settle the return (none before v2)."""
        return []


@event("return.refund_retry_requested", version=2, aggregate="return", min_reader_version=2)
class ReturnRefundRetryRequested(ReturnRefundRetryRequestedV1, frozen=True, kw_only=True):
    """v2 may name the refunds made by hand that paid the return back (``settle_with``, the payment ledger's
    refund ids, from POST /api/payments/{id}/refund): they settle it, made at any time (before the return
    asked too), or the retry is refused saying which one is at fault; the provider is not asked. Empty: as
    v1. A payment consumer still on v1 code would ignore them and ask the provider: min_reader_version=2
    makes it dead-letter the record instead, redriven after its deploy."""

    settle_with: list[uuid.UUID] = msgspec.field(default_factory=list)

    def named_refunds(self) -> list[uuid.UUID]:
        return self.settle_with


@event("return.completed", version=1, aggregate="return")
class ReturnCompleted(_AboutReturn, frozen=True, kw_only=True):
    """Refunded, and every sellable unit is back in stock: nothing is left to do."""

    completed_at: dt.datetime


@event("return.expired", version=1, aggregate="return")
class ReturnExpired(_AboutReturn, frozen=True, kw_only=True):
    """Nothing came back (or nobody approved) before ``expires_at``: the units may be returned again."""

    expired_at: dt.datetime
