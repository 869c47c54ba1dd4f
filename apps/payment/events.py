"""The payment service's event contracts, both ways.

Published (topic commerce.payment, aggregate "payment"): what happened to an order's payment. The
aggregate id is the ORDER id, not the payment id, as the warehouse does for inventory.*: everything that
happens to one order's money shares a partition, so the order saga sees it in the order it happened.

Consumed (topic commerce.order.payment, aggregate "order"): the order saga's requests, named as facts about
the order like the rest of the order.* events ("the order requested payment"), defined here because the
payment service owns what it accepts. The order service emits them through its own outbox; the stream
`order.payment` ([tool.outbox] streams) gives them a topic of their own, so the payment group does not wake
for every other order event (docs/events/routing.md).
"""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import uuid
from decimal import Decimal

import msgspec

from outbox.events import Event, event

__all__ = [
    "OrderPaymentCancelRequested",
    "OrderPaymentCaptureRequested",
    "OrderPaymentRequested",
    "PaymentAuthorized",
    "PaymentCaptureFailed",
    "PaymentCaptured",
    "PaymentDeclined",
    "PaymentFailed",
    "PaymentMethod",
    "PaymentRefundFailed",
    "PaymentRefunded",
    "PaymentVoidFailed",
    "PaymentVoided",
]


# --- requests from the order saga (aggregate "order", key = order id) ------------------------------------


class PaymentMethod(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's token for the buyer's card (never a card number): e.g. {type: card, token: tok_visa}."""

    type: str
    token: str


@event("order.payment_requested", version=1, aggregate="order")
class OrderPaymentRequested(Event, frozen=True, kw_only=True):
    """Authorize ``amount`` for the order. One payment per (order, attempt): a redelivered or repeated
    request with the same attempt is the same payment and the same provider authorization."""

    order_id: uuid.UUID
    amount: Decimal
    currency: str
    payment_method: PaymentMethod
    customer_id: str
    attempt: int = 1
    requested_at: dt.datetime


@event("order.payment_capture_requested", version=1, aggregate="order")
class OrderPaymentCaptureRequested(Event, frozen=True, kw_only=True):
    """Capture the order's authorized payment (the order shipped); all of it unless ``amount`` is less."""

    order_id: uuid.UUID
    amount: Decimal | None = None
    requested_at: dt.datetime


@event("order.payment_cancel_requested", version=1, aggregate="order")
class OrderPaymentCancelRequested(Event, frozen=True, kw_only=True):
    """Give the order's money back, whatever state the payment is in: void an authorization, refund a
    capture, and an authorization still awaiting the provider's answer is voided once it arrives."""

    order_id: uuid.UUID
    # out_of_stock, payment_declined, timeout, customer_request, ... (the order's cancellation reason)
    reason: str
    requested_at: dt.datetime


# --- what the payment service publishes (aggregate "payment", key = order id) ----------------------------
# Two unregistered bases carry the fields most of them open with; each event's schema is as if spelt out
# (a subclass's own fields follow its bases', and the schema's title is the subclass's name).


class _AboutPayment(Event, frozen=True, kw_only=True):
    payment_id: uuid.UUID
    order_id: uuid.UUID


class _AboutAmount(_AboutPayment, frozen=True, kw_only=True):
    amount: Decimal
    currency: str


@event("payment.authorized", version=1, aggregate="payment", key="order_id")
class PaymentAuthorized(_AboutAmount, frozen=True, kw_only=True):
    """The provider holds ``amount`` on the buyer's card for the order."""

    provider: str
    provider_reference: str
    authorized_at: dt.datetime


@event("payment.declined", version=1, aggregate="payment", key="order_id")
class PaymentDeclined(_AboutAmount, frozen=True, kw_only=True):
    """The provider refused the card (``decline_code`` is the provider's, e.g. card_declined)."""

    decline_code: str
    declined_at: dt.datetime


@event("payment.failed", version=1, aggregate="payment", key="order_id")
class PaymentFailed(_AboutAmount, frozen=True, kw_only=True):
    """The authorization could not be made for another reason than the card (e.g. invalid_request)."""

    reason: str
    failed_at: dt.datetime


@event("payment.captured", version=1, aggregate="payment", key="order_id")
class PaymentCaptured(_AboutAmount, frozen=True, kw_only=True):
    """The authorized money was taken (``amount`` captured, at most what was authorized)."""

    captured_at: dt.datetime


@event("payment.capture_failed", version=1, aggregate="payment", key="order_id")
class PaymentCaptureFailed(Event, frozen=True, kw_only=True):
    """A capture was refused: by the provider, or because there was no authorized payment to capture
    (then ``payment_id`` is null)."""

    order_id: uuid.UUID
    reason: str
    failed_at: dt.datetime
    payment_id: uuid.UUID | None = None


@event("payment.voided", version=1, aggregate="payment", key="order_id")
class PaymentVoided(_AboutAmount, frozen=True, kw_only=True):
    """The authorization was released: the buyer was never charged."""

    reason: str | None = None
    voided_at: dt.datetime


@event("payment.void_failed", version=1, aggregate="payment", key="order_id")
class PaymentVoidFailed(_AboutPayment, frozen=True, kw_only=True):
    """The provider refused to void an authorization (it says why in ``reason``)."""

    reason: str
    failed_at: dt.datetime


@event("payment.refunded", version=1, aggregate="payment", key="order_id")
class PaymentRefunded(_AboutPayment, frozen=True, kw_only=True):
    """``amount`` went back to the buyer; ``refunded_total`` of ``captured_amount`` is refunded so far."""

    refund_id: uuid.UUID
    amount: Decimal
    refunded_total: Decimal
    captured_amount: Decimal
    currency: str
    status: str
    reason: str | None = None
    refunded_at: dt.datetime


@event("payment.refund_failed", version=1, aggregate="payment", key="order_id")
class PaymentRefundFailed(_AboutPayment, frozen=True, kw_only=True):
    """The provider refused a refund; nothing went back."""

    refund_id: uuid.UUID
    amount: Decimal
    reason: str
    failed_at: dt.datetime
