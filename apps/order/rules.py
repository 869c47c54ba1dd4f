"""Pure order rules: which status may follow which, how an order is priced, what a request looks like.

No I/O here: the service layer fetches customers and products, these functions decide.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from apps.common.errors import InconsistentFields, OutOfRange, StateConflict, UnknownReference
from apps.common.pricing import MAX_AMOUNT, ZERO, CatalogPrice, PricedLine, Quote, price_line

PENDING: Final = "pending"
CONFIRMED: Final = "confirmed"
PROCESSING: Final = "processing"
SHIPPED: Final = "shipped"
DELIVERED: Final = "delivered"
CANCELLED: Final = "cancelled"

# An order is born pending; the saga confirms it once its stock is reserved (and its payment authorized)
# or cancels it. Then it moves forward only and can be cancelled until it is delivered: by its customer
# until it ships, after that only by the back office (a parcel stopped before delivery; check_cancel).
# Delivered and cancelled are final. Orders placed before the saga existed were born confirmed.
TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    PENDING: frozenset({CONFIRMED, CANCELLED}),
    CONFIRMED: frozenset({PROCESSING, CANCELLED}),
    PROCESSING: frozenset({SHIPPED, CANCELLED}),
    SHIPPED: frozenset({DELIVERED, CANCELLED}),
    DELIVERED: frozenset(),
    CANCELLED: frozenset(),
}
STATUSES: Final = tuple(TRANSITIONS)

# Who writes a status history row's changed_by: the saga (its compensations) or the order API.
SAGA: Final = "order-saga"
# Why an order is cancelled, as its answer says (``status_reason``): a stable code, never the free text a
# person gave nor a provider's words (those stay in order_status_history). The saga's own reasons are its
# history rows' (apps/order/saga.py); a person's cancellation is the customer's or the back office's, by the
# role the API recorded with it (history metadata ``role``), ``requested`` where none was recorded.
StatusReason = Literal[
    "out_of_stock",
    "reservation_refused",
    "payment_declined",
    "timeout",
    "cancelled_by_customer",
    "cancelled_by_staff",
    "requested",
]
STATUS_REASONS: Final[tuple[StatusReason, ...]] = get_args(StatusReason)
_SAGA_REASONS: Final[Mapping[str, StatusReason]] = {
    "out_of_stock": "out_of_stock",
    "payment_declined": "payment_declined",
    "timeout": "timeout",
}
_ROLE_REASONS: Final[Mapping[str, StatusReason]] = {
    "customer": "cancelled_by_customer",
    "staff": "cancelled_by_staff",
    "admin": "cancelled_by_staff",
}


def check_transition(current: str, target: str, *, by_saga: bool = False) -> None:
    """Raise StateConflict unless an order in ``current`` may move to ``target``. Only the saga confirms a
    pending order (its stock and payment decide); by hand a pending order can only be cancelled."""
    if target == current:
        raise StateConflict("status", f"the order is already {current}")
    if current == PENDING and target == CONFIRMED and not by_saga:
        raise StateConflict("status", "a pending order is confirmed by its saga once stock (and payment) are held")
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final status)"
        raise StateConflict("status", f"cannot change from {current} to {target}; allowed: {allowed}")


def check_cancel(current: str, reason: str | None, *, back_office: bool) -> None:
    """A shipped order is no longer the customer's to cancel (after delivery it is a return); the back
    office cancels it when the carrier stopped the parcel before delivery, and must say why."""
    if current != SHIPPED:
        return
    if not back_office:
        raise StateConflict("status", "a shipped order cannot be cancelled; once delivered it can be returned")
    if reason is None or not reason.strip():
        raise StateConflict("reason", "cancelling a shipped order needs the reason its delivery was stopped")


def status_reason(status: str, changed_by: str | None, reason: str | None, role: str | None) -> StatusReason | None:
    """Why an order is in ``status``, from the history row that cancelled it (its ``changed_by``, ``reason``
    and metadata ``role``): None unless cancelled. The saga's reasons are its own codes, but for the
    warehouse's refusals other than a shortage (invalid_quantity, no_items), passed through as the warehouse
    gave them: ``reservation_refused``."""
    if status != CANCELLED:
        return None
    if changed_by == SAGA:
        return _SAGA_REASONS.get(reason or "", "reservation_refused")
    return _ROLE_REASONS.get(role or "", "requested")


def status_changed_at(status: str, created_at: dt.datetime, entered_at: dt.datetime | None) -> dt.datetime | None:
    """When the order entered ``status``: a pending order when it was placed (``created_at``: the placement
    writes its first history row with it), any other at the time of the history row that moved it there
    (``entered_at``, which the status change wrote with the order's ``updated_at``; None without that row)."""
    return created_at if status == PENDING else entered_at


@dataclass(frozen=True, slots=True)
class RequestedLine:
    product_id: uuid.UUID
    quantity: int


def check_lines(lines: Sequence[RequestedLine]) -> None:
    """One line per product: a repeated product is most likely a client bug, so it is refused."""
    seen: set[uuid.UUID] = set()
    for index, line in enumerate(lines):
        if line.product_id in seen:
            raise InconsistentFields(f"items[{index}].product_id", "this product appears on more than one line")
        seen.add(line.product_id)


def price_order(lines: Sequence[RequestedLine], catalog: Mapping[uuid.UUID, CatalogPrice]) -> Quote:
    """Price each line from the catalog; every product must be sellable and in one currency."""
    check_lines(lines)
    priced: list[PricedLine] = []
    currency: str | None = None
    for index, line in enumerate(lines):
        product = catalog.get(line.product_id)
        if product is None:
            raise UnknownReference(f"items[{index}].product_id", "unknown product, or not for sale")
        if currency is None:
            currency = product.currency
        elif product.currency != currency:
            # Each line is valid alone; together they contradict (as in a cart): a 422, never a 400.
            raise InconsistentFields(
                f"items[{index}].product_id", f"priced in {product.currency}, the order's other items in {currency}"
            )
        priced_line = price_line(product, line.quantity, field=f"items[{index}].product_id")
        if priced_line.total_price > MAX_AMOUNT:
            raise OutOfRange(
                f"items[{index}].quantity", f"the line's total {priced_line.total_price} is over {MAX_AMOUNT}"
            )
        priced.append(priced_line)
    assert currency is not None  # the schema guarantees at least one line
    quote = Quote(currency=currency, lines=tuple(priced), subtotal=sum((p.total_price for p in priced), ZERO))
    if quote.subtotal > MAX_AMOUNT or quote.total_amount > MAX_AMOUNT:
        raise OutOfRange("items", f"the order's total_amount {quote.total_amount} is over {MAX_AMOUNT}")
    return quote


def order_number(order_id: uuid.UUID, placed_at: dt.datetime) -> str:
    """Human-readable and unique: the day, the millisecond of that (UTC) day in 7 hex digits, then 8 hex
    digits of the order id's random tail, e.g. ``ORD-20261127-2FA1C3B9E04D17A``.

    Numbers sort by the time they were given, so each lands at the end of the day's range of
    uq_orders_order_number instead of on a random leaf of it (until session 29 the tail was the id's last 10
    hex digits: ~0.8 full-page image per order late in a day, docs/decisions.md). Two orders can share a
    number only within one millisecond (32 random bits: 1 in 4.3 billion per pair); a day of 1M orders
    expects ~1e-6 collisions, against ~0.45 with the 40 random bits spread over the whole day before.
    """
    placed_at = placed_at.astimezone(dt.UTC)
    midnight = placed_at.replace(hour=0, minute=0, second=0, microsecond=0)
    ms_of_day = (placed_at - midnight) // dt.timedelta(milliseconds=1)
    return f"ORD-{placed_at:%Y%m%d}-{ms_of_day:07X}{order_id.hex[-8:].upper()}"


def fingerprint(body: bytes) -> str:
    """What an Idempotency-Key is bound to: the same key with another request is refused."""
    return hashlib.sha256(body).hexdigest()
