"""The returns service's pure rules, and the pure folds of return.refunded in customer stats and analytics."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import msgspec
import pytest

from apps.analytics.returns import fold_refunds as fold_sales_refunds
from apps.common.errors import InconsistentFields, OutOfRange, StateConflict, UnknownReference
from apps.customer.returns import fold_refunds as fold_customer_refunds
from apps.returns.events import RefundedLine, ReturnReceivedV1, ReturnReceivedV2, ReturnRefunded
from apps.returns.orders import OrderFact, fold
from apps.returns.rules import (
    COST_NOTHING,
    NOT_PAID,
    OrderLine,
    OrderTerms,
    ReturnedLine,
    check_lines,
    check_received,
    check_transition,
    check_window,
    compute_refund,
    is_expired,
    order_paid,
    refund_settled,
    refund_shipping_by_default,
    request_reason,
    return_number,
    sellable,
)
from outbox.events import decode_payload

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
WINDOW = dt.timedelta(days=30)
A, B = uuid.uuid4(), uuid.uuid4()
LINES = {
    1: OrderLine(1, A, "SKU-A", "A", 3, Decimal("10.00")),
    2: OrderLine(2, B, "SKU-B", "B", 1, Decimal("25.00")),
}
TERMS = OrderTerms("USD", Decimal("55.00"), Decimal("0.00"), Decimal("3.85"), Decimal("5.00"))


def test_only_a_delivered_order_within_the_window() -> None:
    check_window("delivered", NOW - WINDOW, NOW, WINDOW)  # the last moment is still inside
    with pytest.raises(StateConflict) as late:
        check_window("delivered", NOW - WINDOW - dt.timedelta(seconds=1), NOW, WINDOW)
    assert late.value.field == "order_id"
    for status in ("shipped", "cancelled", "pending"):
        with pytest.raises(StateConflict):
            check_window(status, None, NOW, WINDOW)


def test_lines_are_checked_against_the_order_and_other_returns() -> None:
    assert check_lines([ReturnedLine(1, 2)], LINES, {1: 1}) == [LINES[1]]
    cases: list[tuple[list[ReturnedLine], dict[int, int], type[Exception], str]] = [
        ([ReturnedLine(9, 1)], {}, UnknownReference, "items[0].order_item_id"),
        ([ReturnedLine(1, 1), ReturnedLine(1, 1)], {}, InconsistentFields, "items[1].order_item_id"),
        ([ReturnedLine(1, 4)], {}, OutOfRange, "items[0].quantity"),
        ([ReturnedLine(2, 1)], {2: 1}, StateConflict, "items[0].quantity"),
    ]
    for asked, taken, error, field in cases:
        with pytest.raises(error) as raised:
            check_lines(asked, LINES, taken)
        assert raised.value.field == field  # type: ignore[attr-defined]


def test_received_items_must_be_the_returns_once_within_what_was_asked_and_something() -> None:
    one, two = uuid.uuid4(), uuid.uuid4()
    check_received([(one, 2), (two, 0)], {one: 2, two: 1})
    with pytest.raises(UnknownReference):
        check_received([(uuid.uuid4(), 1)], {one: 2})
    with pytest.raises(InconsistentFields):
        check_received([(one, 1), (one, 1)], {one: 2})
    with pytest.raises(OutOfRange):
        check_received([(one, 3)], {one: 2})
    with pytest.raises(InconsistentFields) as nothing:
        check_received([(one, 0)], {one: 2})
    assert nothing.value.field == "items"


def test_refund_shares_tax_and_shipping_by_goods_value_rounded_down() -> None:
    refund = compute_refund(LINES, [ReturnedLine(1, 2)], TERMS, refund_shipping=False, refund_tax=True)
    # 20 of 55: tax 3.85 * 20 / 55 = 1.40
    assert refund.items == {1: Decimal("21.40")} and refund.shipping == Decimal("0.00")
    assert refund.total == Decimal("21.40")
    with_shipping = compute_refund(LINES, [ReturnedLine(2, 1)], TERMS, refund_shipping=True, refund_tax=False)
    # 25 of 55: shipping 5.00 * 25 / 55 = 2.2727.. -> 2.27
    assert with_shipping.total == Decimal("27.27")
    everything = compute_refund(
        LINES, [ReturnedLine(1, 3), ReturnedLine(2, 1)], TERMS, refund_shipping=True, refund_tax=True
    )
    assert everything.total <= TERMS.subtotal + TERMS.tax_amount + TERMS.shipping_amount
    discounted = OrderTerms("USD", Decimal("55.00"), Decimal("11.00"), Decimal("0.00"), Decimal("0.00"))
    assert compute_refund(LINES, [ReturnedLine(2, 1)], discounted, refund_shipping=False, refund_tax=True).total == (
        Decimal("20.00")
    )


def test_an_order_placed_without_payment_refunds_nothing_and_asks_the_payment_service_nothing() -> None:
    # POST /api/orders confirms with payment_status pending and nothing ever moves it; a checkout order
    # is confirmed authorized, then captured (or refunded, capture_failed...): a payment exists.
    assert order_paid("delivered", "pending") is False
    paid = ("authorized", "captured", "partially_refunded", "capture_failed")
    assert all(order_paid("delivered", s) is True for s in paid)
    # Not known before delivery: a checkout order awaiting its authorization is pending too.
    assert order_paid("pending", "pending") is None and order_paid("confirmed", "pending") is None
    unpaid = OrderTerms("USD", Decimal("55.00"), Decimal("0.00"), Decimal("3.85"), Decimal("5.00"), paid=False)
    nothing = compute_refund(
        LINES, [ReturnedLine(1, 2), ReturnedLine(2, 1)], unpaid, refund_shipping=True, refund_tax=True
    )
    assert nothing.items == {1: Decimal("0.00"), 2: Decimal("0.00")}
    assert (nothing.shipping, nothing.total, nothing.nothing_because) == (Decimal("0.00"), Decimal("0.00"), NOT_PAID)
    assert (
        compute_refund(LINES, [ReturnedLine(1, 1)], TERMS, refund_shipping=False, refund_tax=True).nothing_because
        is None
    )
    free = OrderTerms("USD", Decimal("55.00"), Decimal("55.00"), Decimal("0.00"), Decimal("0.00"))
    assert compute_refund(
        LINES, [ReturnedLine(2, 1)], free, refund_shipping=False, refund_tax=True
    ).nothing_because == (COST_NOTHING)
    # The refund is settled where it would have been asked for: on receipt, or a refund_only's approval.
    assert refund_settled("refunded", "refund", None)
    assert refund_settled("received", "refund", NOT_PAID) and not refund_settled("received", "refund", None)
    assert refund_settled("approved", "refund_only", NOT_PAID)
    assert not refund_settled("approved", "refund", NOT_PAID)  # the items are still to come back
    assert not refund_settled("requested", "refund_only", NOT_PAID)
    check_transition("received", "completed")
    check_transition("approved", "completed")
    # return.received: every v1 asked for its refund; v2 does unless it says why not.
    base = {
        "return_id": str(A), "return_number": "RET-1", "order_id": str(B), "customer_id": "c", "items": [],
        "refund": {"refund_id": str(A), "amount": "0.00", "currency": "USD", "reason": "return RET-1"},
        "received_at": NOW.isoformat(),
    }  # fmt: skip
    for version in (1, 2):
        decoded = decode_payload("return.received", version, base)
        assert isinstance(decoded, ReturnReceivedV1) and decoded.asks_refund()
    v2 = decode_payload("return.received", 2, {**base, "no_refund_reason": NOT_PAID})
    assert isinstance(v2, ReturnReceivedV2) and not v2.asks_refund()


def test_policy_defaults_statuses_and_numbers() -> None:
    assert refund_shipping_by_default(["defective", "wrong_item"])
    assert not refund_shipping_by_default(["defective", "changed_mind"])
    assert request_reason(["defective", "defective"]) == "defective"
    assert request_reason(["defective", "other"]) == "multiple"
    assert sellable("new") and sellable("opened") and not sellable("damaged") and not sellable(None)
    rid = uuid.UUID("01a215fa-8362-7720-b99c-69fb91361b55")
    assert return_number(rid, NOW) == "RET-20261126-FB91361B55"
    check_transition("requested", "approved")
    with pytest.raises(StateConflict):
        check_transition("requested", "received")
    with pytest.raises(StateConflict):
        check_transition("completed", "refunded")
    assert is_expired("approved", NOW, NOW) and not is_expired("received", NOW - WINDOW, NOW)
    assert not is_expired("requested", None, NOW)


def test_order_facts_fold_to_the_furthest_status_per_order() -> None:
    order = uuid.uuid4()
    delivered_at = NOW - dt.timedelta(hours=1)
    facts = [
        OrderFact(order, "pending", "c1", "USD"),
        OrderFact(order, "delivered", "c1", changed_at=delivered_at),
        OrderFact(order, "shipped", "c1", changed_at=NOW),  # late and older: ignored
    ]
    [folded] = fold(facts)
    assert (folded.status, folded.changed_at, folded.customer_id, folded.currency) == (
        "delivered",
        delivered_at,
        "c1",
        "USD",
    )


def _refunded(customer: str, amount: str, product: uuid.UUID, units: int) -> ReturnRefunded:
    return ReturnRefunded(
        return_id=uuid.uuid4(),
        return_number="RET-X",
        order_id=uuid.uuid4(),
        customer_id=customer,
        refund_id=uuid.uuid4(),
        amount=Decimal(amount),
        currency="usd",
        items=[RefundedLine(product_id=product, quantity=units, refund_amount=Decimal(amount))],
        refunded_at=NOW,
    )


def test_refunds_fold_into_customer_and_sales_deltas() -> None:
    events = [_refunded("c1", "10.00", A, 1), _refunded("c1", "5.50", B, 2), _refunded("c2", "1.00", A, 1)]
    customers = fold_customer_refunds(events)
    assert (customers["c1", "USD"].returns, customers["c1", "USD"].refunded) == (2, Decimal("15.50"))
    sales = fold_sales_refunds(events)
    day = sales.days[(NOW.date(), "USD")]
    assert (day.returns, day.refunds) == (3, Decimal("16.50"))
    assert (sales.products[(A, "USD")].units_returned, sales.products[(A, "USD")].refunded) == (2, Decimal("11.00"))


def test_a_refund_counts_in_its_own_currency_only() -> None:
    yen = msgspec.structs.replace(_refunded("c1", "1000.00", A, 1), currency="JPY")
    customers = fold_customer_refunds([_refunded("c1", "10.00", A, 1), yen])
    assert {key: (d.returns, d.refunded) for key, d in customers.items()} == {
        ("c1", "USD"): (1, Decimal("10.00")),
        ("c1", "JPY"): (1, Decimal("1000.00")),
    }
