"""Pure returns rules: statuses and their moves, the return window, what may still be returned, what a
return refunds, what goes back to stock, and the return number.

No I/O here: services.py applies these to rows it has locked; the tables' CHECKs are the backstop.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any, Final

from apps.common.errors import InconsistentFields, OutOfRange, StateConflict, UnknownReference
from apps.common.pricing import round_money

__all__ = [
    "CONDITIONS",
    "REASONS",
    "REFUND_BLOCKED_BY",
    "REFUND_ERROR",
    "REJECTION_REASON",
    "RETURN_TYPES",
    "STATUSES",
    "TRANSITIONS",
    "OrderLine",
    "OrderTerms",
    "Refund",
    "ReturnedLine",
    "asks_again_on_its_own",
    "check_lines",
    "check_received",
    "check_refund_retry",
    "check_settle_with",
    "check_transition",
    "check_window",
    "compute_refund",
    "is_expired",
    "order_paid",
    "refund_answer_applies",
    "refund_asked_at",
    "refund_settled",
    "refund_shipping_by_default",
    "request_reason",
    "return_number",
    "sellable",
    "without",
]

REQUESTED: Final = "requested"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
RECEIVED: Final = "received"
REFUNDED: Final = "refunded"
REFUND_FAILED: Final = "refund_failed"
COMPLETED: Final = "completed"
EXPIRED: Final = "expired"

# requested -> approved | rejected -> received -> refunded -> completed; a refund_only return is refunded
# on approval (nothing ships back). A return with nothing to refund (an order never paid) skips refunded:
# received -> completed, or approved -> completed for a refund_only one. A request nobody approves or
# ships back in time expires. A refund_failed return waits for staff: POST /retry-refund asks the payment
# service again and it becomes refunded, or stays refund_failed with the new error (refund_answer_applies).
TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    REQUESTED: frozenset({APPROVED, REJECTED, EXPIRED}),
    APPROVED: frozenset({RECEIVED, REFUNDED, REFUND_FAILED, COMPLETED, EXPIRED}),
    RECEIVED: frozenset({REFUNDED, REFUND_FAILED, COMPLETED}),
    REFUNDED: frozenset({COMPLETED}),
    REFUND_FAILED: frozenset({REFUNDED}),
    REJECTED: frozenset(),
    COMPLETED: frozenset(),
    EXPIRED: frozenset(),
}
STATUSES: Final = tuple(TRANSITIONS)
# Statuses whose items still count against what the order may return (everything but the dead ends).
OPEN_OR_DONE: Final = frozenset({REQUESTED, APPROVED, RECEIVED, REFUNDED, REFUND_FAILED, COMPLETED})
# Statuses in which a request can still expire (nothing came back yet).
EXPIRABLE: Final = frozenset({REQUESTED, APPROVED})

REFUND: Final = "refund"  # the items ship back; the refund follows their receipt
REFUND_ONLY: Final = "refund_only"  # nothing ships back (policy: e.g. not worth the postage); refund on approval
RETURN_TYPES: Final = (REFUND, REFUND_ONLY)

# The merchant's fault: the customer gets the shipping back too (the seed's refund_shipping).
MERCHANT_FAULT: Final = frozenset({"defective", "damaged_in_transit", "wrong_item", "not_as_described"})
REASONS: Final = (*sorted(MERCHANT_FAULT), "changed_mind", "no_longer_needed", "too_late", "other")
# Conditions found on receipt; the first two go back to stock.
SELLABLE: Final = frozenset({"new", "opened"})
CONDITIONS: Final = ("new", "opened", "used", "damaged", "defective")

ZERO: Final = Decimal("0.00")
CENT: Final = Decimal("0.01")

# The order service's payment_status of an order confirmed without taking a payment (POST /api/orders);
# a checkout order is confirmed only once authorized, so a delivered order still "pending" was never paid.
UNPAID_STATUS: Final = "pending"
NOT_PAID: Final = "nothing to refund: the order was placed without payment"
COST_NOTHING: Final = "nothing to refund: the returned units cost nothing"
# The metadata keys under which a return keeps the payment service's reason for a failed refund and staff's
# for a rejection (the API's refund_error and rejection_reason).
REFUND_ERROR: Final = "refund_error"
REJECTION_REASON: Final = "rejection_reason"
# Metadata keys of a refund retry: when staff asked for the one whose answer is awaited (absent once it
# came), and every refund id the return asked for before its current ``refund_id`` (oldest first).
REFUND_RETRY_REQUESTED_AT: Final = "refund_retry_requested_at"
EARLIER_REFUND_IDS: Final = "earlier_refund_ids"
# The awaited retry's event id (what operations look for in the payment group's dead letters) and the refunds
# by hand staff named to settle it (settle_with), both kept until the next retry replaces them.
REFUND_RETRY_EVENT_ID: Final = "refund_retry_event_id"
REFUND_RETRY_SETTLE_WITH: Final = "refund_retry_settle_with"
# The refunds by hand staff named when the return asked for its refund (approve of a refund_only return, receive).
REFUND_SETTLE_WITH: Final = "refund_settle_with"
# What an answer to the retry removes (the settle_with named stay: which refunds staff said paid it back).
RETRY_AWAITED: Final = (REFUND_RETRY_REQUESTED_AT, REFUND_RETRY_EVENT_ID)
MAX_SETTLE_WITH: Final = 10
# The retry-refund field that gives up the awaited retry, and where each one given up is recorded (who, why,
# when, its refund and event ids, when it was asked): the audit of an operator's way out.
ABANDON_AWAITED: Final = "abandon_awaited"
REFUND_RETRIES_ABANDONED: Final = "refund_retries_abandoned"
# The refunds by hand whose pending answer refused the return's last refund (apps.payment.rules.blocked_by of
# its reason), and each retry the returns service asked on its own once one of them failed (which refund,
# why it failed, when): the audit of a retry no person asked for (progress.retry_unblocked).
REFUND_BLOCKED_BY: Final = "refund_blocked_by"
REFUND_RETRIES_UNBLOCKED: Final = "refund_retries_unblocked"


def check_transition(current: str, target: str, field: str = "status") -> None:
    """Refuse (409, naming ``field``) a move the state machine does not allow."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final status)"
        raise StateConflict(field, f"a {current} return cannot become {target}; allowed: {allowed}")


def return_number(return_id: uuid.UUID, created_at: dt.datetime) -> str:
    """Like the order number: the day, then the random tail of the (time-ordered) return id."""
    return f"RET-{created_at:%Y%m%d}-{return_id.hex[-10:].upper()}"


def check_window(status: str, delivered_at: dt.datetime | None, now: dt.datetime, window: dt.timedelta) -> None:
    """Only a delivered order, and only within ``window`` of its delivery (409 naming order_id)."""
    if status != "delivered" or delivered_at is None:
        raise StateConflict("order_id", f"only a delivered order can be returned; this one is {status}")
    closes = delivered_at + window
    if now > closes:
        raise StateConflict("order_id", f"the return window closed at {closes.isoformat()}")


def is_expired(status: str, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """A request nobody approved or shipped back by ``expires_at``."""
    return status in EXPIRABLE and expires_at is not None and now >= expires_at


@dataclass(frozen=True, slots=True)
class OrderLine:
    """A line of the order as the order service priced it (order_items)."""

    order_item_id: int
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """The order's amounts that a refund shares out: goods subtotal, discount, tax, shipping."""

    currency: str
    subtotal: Decimal
    discount_amount: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    # False for an order placed without payment: its returns refund nothing (nobody paid anything).
    paid: bool = True


def order_paid(status: str, payment_status: str) -> bool | None:
    """Whether the order's payment_status (the order service's) says a payment was taken; None (not known
    yet) before delivery: a checkout order is still ``pending`` while its authorization is awaited."""
    if status != "delivered":
        return None
    return payment_status != UNPAID_STATUS


@dataclass(frozen=True, slots=True)
class ReturnedLine:
    """``quantity`` units of an order line asked back (or received)."""

    order_item_id: int
    quantity: int


def check_lines(
    asked: Sequence[ReturnedLine], lines: Mapping[int, OrderLine], taken: Mapping[int, int]
) -> list[OrderLine]:
    """The order lines asked for, each within what the order holds minus what other returns took.

    Unknown line: 422; a line twice: 422; more than ordered: 422; more than is left (returned or in an
    open return already): 409. Each names ``items[i]``'s field.
    """
    seen: set[int] = set()
    found: list[OrderLine] = []
    for index, item in enumerate(asked):
        line = lines.get(item.order_item_id)
        if line is None:
            raise UnknownReference(f"items[{index}].order_item_id", "the order has no such line")
        if item.order_item_id in seen:
            raise InconsistentFields(f"items[{index}].order_item_id", "this order line appears twice")
        seen.add(item.order_item_id)
        if item.quantity > line.quantity:
            raise OutOfRange(f"items[{index}].quantity", f"the order holds {line.quantity} of this line")
        left = line.quantity - taken.get(item.order_item_id, 0)
        if item.quantity > left:
            raise StateConflict(
                f"items[{index}].quantity", f"only {left} of {line.quantity} are not returned or in an open return"
            )
        found.append(line)
    return found


def check_received(received: Sequence[tuple[uuid.UUID, int]], returned: Mapping[uuid.UUID, int]) -> None:
    """Each received item is one of the return's, once, at most the quantity asked back; something came."""
    seen: set[uuid.UUID] = set()
    for index, (item_id, quantity) in enumerate(received):
        if item_id not in returned:
            raise UnknownReference(f"items[{index}].return_item_id", "the return has no such item")
        if item_id in seen:
            raise InconsistentFields(f"items[{index}].return_item_id", "this item appears twice")
        seen.add(item_id)
        if quantity > returned[item_id]:
            raise OutOfRange(f"items[{index}].quantity_received", f"only {returned[item_id]} were asked back")
    if not any(quantity for _, quantity in received):
        raise InconsistentFields("items", "nothing was received: reject the return instead")


def refund_shipping_by_default(reasons: Sequence[str]) -> bool:
    """Shipping goes back when every item comes back through the merchant's fault."""
    return bool(reasons) and all(reason in MERCHANT_FAULT for reason in reasons)


def request_reason(reasons: Sequence[str]) -> str:
    """The request's reason (the seed's NOT NULL column): the items' one reason, or ``multiple``."""
    distinct = sorted(set(reasons))
    return distinct[0] if len(distinct) == 1 else "multiple"


@dataclass(frozen=True, slots=True)
class Refund:
    """Per order line: what its units refund; plus the shipping share and the total; and, when the total
    is zero, why nothing is refunded (the return then asks the payment service for nothing)."""

    items: dict[int, Decimal]
    shipping: Decimal
    total: Decimal
    nothing_because: str | None = None


def _share(amount: Decimal, part: Decimal, whole: Decimal, currency: str, rounding: str = ROUND_DOWN) -> Decimal:
    # Rounded so that the refund is rounded down (a share given back down, a share taken off up): the refunds of
    # several returns of one order never add up to more than was paid. To the currency's unit: 24.23 yen is a
    # refund no card provider makes (the payment refuses it: refund_failed).
    if whole <= 0:
        return ZERO
    return round_money(amount * part / whole, currency, rounding)


def compute_refund(
    lines: Mapping[int, OrderLine],
    returned: Sequence[ReturnedLine],
    terms: OrderTerms,
    *,
    refund_shipping: bool,
    refund_tax: bool,
) -> Refund:
    """The refund of ``returned`` units at the order's prices: each line's goods less its share of the
    order's discount, plus its share of the tax (``refund_tax``); plus the goods' share of the shipping
    (``refund_shipping``). Shares are by goods value, to the currency's unit (the cent; the yen), each rounded
    against the customer: the discount's up, the others down. An order placed without payment refunds
    nothing, whatever was returned."""
    if not terms.paid:
        return Refund({line.order_item_id: ZERO for line in returned}, ZERO, ZERO, NOT_PAID)
    items: dict[int, Decimal] = {}
    goods_total = ZERO
    for line in returned:
        goods = (lines[line.order_item_id].unit_price * line.quantity).quantize(CENT)
        amount = goods - _share(terms.discount_amount, goods, terms.subtotal, terms.currency, ROUND_UP)
        if refund_tax:
            amount += _share(terms.tax_amount, goods, terms.subtotal, terms.currency)
        items[line.order_item_id] = max(ZERO, amount)
        goods_total += goods
    shipping = _share(terms.shipping_amount, goods_total, terms.subtotal, terms.currency) if refund_shipping else ZERO
    total = sum(items.values(), ZERO) + shipping
    return Refund(items, shipping, total, COST_NOTHING if total == ZERO else None)


def refund_settled(status: str, return_type: str, nothing_because: str | None) -> bool:
    """Whether nothing waits on the payment service any more: the refund arrived, or there is none to ask
    for and the return is where it would have asked (received; approved, for a refund_only return)."""
    if status == REFUNDED:
        return True
    asks_here = status == RECEIVED or (status == APPROVED and return_type == REFUND_ONLY)
    return nothing_because is not None and asks_here


def check_refund_retry(
    status: str,
    retry_requested_at: str | None,
    now: dt.datetime,
    retry_event_id: str | None = None,
    *,
    abandon: bool = False,
    requested_by: str | None = None,
) -> None:
    """Staff may ask the payment service again only for a refund_failed return, and only once its last
    retry was answered (409 naming ``status``): two retries in flight could both refund. The awaited
    retry's 409 says how long ago it was asked and, with its event's id, where operations look when the
    answer is late: an answer normally comes within seconds, so minutes mean the payment group is down,
    behind, or dead-lettered the event (which then waits for `just dlq redrive`, docs/operations.md)."""
    if status != REFUND_FAILED:
        raise StateConflict("status", f"only a refund_failed return can retry its refund; this one is {status}")
    if abandon:  # staff give the awaited retry up: the payment service records it as never asked
        if retry_requested_at is None:
            raise InconsistentFields(ABANDON_AWAITED, "no retry of this refund awaits an answer")
        if not requested_by:
            raise InconsistentFields("requested_by", "who abandons the awaited retry is recorded: name them")
        return
    if retry_requested_at is not None:
        waited = _waited(now - dt.datetime.fromisoformat(retry_requested_at))
        late = (
            f"; if no answer comes, operations look for its event {retry_event_id} in "
            "`just dlq list payment --pending` (docs/operations.md)"
            if retry_event_id
            else ""
        )
        raise StateConflict(
            "status",
            f"a retry of this refund asked at {retry_requested_at} ({waited} ago) still awaits the payment "
            f"service's answer{late}; if it can never be answered (its letter acknowledged), retry with "
            f"{ABANDON_AWAITED} and requested_by",
        )


def check_settle_with(named: Sequence[uuid.UUID], own: Sequence[uuid.UUID]) -> None:
    """The refunds staff name to settle a retry (``settle_with``): each once, and none of the return's own
    (those are the refunds that failed; 422 naming the entry). Whether each is a refund made by hand of
    the order's payment that went through, and whether they cover the return, is checked next against the
    payment's ledger (ReturnService), and decided by the payment service under its payment's lock."""
    seen: set[uuid.UUID] = set()
    for n, op_id in enumerate(named):
        if op_id in seen:
            raise InconsistentFields(f"settle_with[{n}]", f"refund {op_id} is named twice")
        if op_id in own:
            raise InconsistentFields(
                f"settle_with[{n}]", f"refund {op_id} is this return's own: name the refunds made by hand"
            )
        seen.add(op_id)


def without(metadata: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """``metadata`` less ``keys`` (a new dict: the JSONB column is replaced, never changed in place)."""
    return {key: value for key, value in metadata.items() if key not in keys}


def _waited(waited: dt.timedelta) -> str:
    seconds = max(0, int(waited.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 120 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def refund_answer_applies(status: str, retry_requested_at: str | None) -> bool:
    """Whether the payment service's answer about the return's current refund (payment.refunded or
    payment.refund_failed naming its ``refund_id``) moves it: the first answer (received; approved, for a
    refund_only return), or a retry's while it is awaited. A copy of an answer applied already does not."""
    if status == REFUND_FAILED:
        return retry_requested_at is not None
    return status in (APPROVED, RECEIVED)


def asks_again_on_its_own(
    status: str, retry_requested_at: str | None, blocked_by: Sequence[uuid.UUID], failed: uuid.UUID
) -> bool:
    """Whether refund ``failed`` (made by hand) failing lets the returns service retry the return's refund
    without a person: the return is refund_failed, no retry of it is awaited (staff's own is on its way, or
    an answer would not apply), and its refusal named ``failed`` as what held it back. A refund by hand
    that failed moved no money, so nothing of this return went back by it; the retry is decided under the
    payment's lock as staff's would be (apps.payment.rules.plan_refund_retry): refused again while another
    refund by hand is pending, settled by refunds by hand that went through since, else asked of the
    provider once. One that succeeded is left to staff: nothing tells whether it was this return's money."""
    return status == REFUND_FAILED and retry_requested_at is None and failed in blocked_by


def refund_asked_at(
    return_type: str, approved_at: dt.datetime | None, processed_at: dt.datetime | None
) -> dt.datetime | None:
    """When the return first asked for its refund: on approval for a refund_only return, else on receipt."""
    return approved_at if return_type == REFUND_ONLY else processed_at


def sellable(condition: str | None) -> bool:
    """Whether units found in ``condition`` go back to stock."""
    return condition in SELLABLE
