"""The saga's pure parts: who may confirm, what projections count, where a reservation's lines went."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from apps.analytics.projections import fold as sales_fold
from apps.common.errors import StateConflict
from apps.common.settings import forget_settings
from apps.customer.projections import fold as stats_fold
from apps.order.events import OrderCancelled, OrderCancelledV1, OrderConfirmed, OrderCreated, OrderLine
from apps.order.rules import check_cancel, check_transition
from apps.order.saga_rows import line_warehouses
from apps.order.saga_state import DONE, PAYMENT, OrderSaga, enter
from apps.warehouse.events import ReservedItem

NOW = dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.UTC)
PRODUCT = uuid.uuid4()
LINE = OrderLine(product_id=PRODUCT, sku="S", quantity=2, unit_price=Decimal("5.00"), total_price=Decimal("10.00"))


def created(status: str, order_id: uuid.UUID) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        order_number="ORD-1",
        customer_id="c1",
        status=status,
        currency="USD",
        total_amount=Decimal("10.00"),
        items=[LINE],
        created_at=NOW,
    )


def confirmed(order_id: uuid.UUID) -> OrderConfirmed:
    return OrderConfirmed(
        order_id=order_id,
        order_number="ORD-1",
        customer_id="c1",
        currency="USD",
        total_amount=Decimal("10.00"),
        items=[LINE],
        payment_status="authorized",
        created_at=NOW,
        confirmed_at=NOW,
    )


def cancelled(order_id: uuid.UUID, was_confirmed: bool) -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id,
        customer_id="c1",
        currency="USD",
        total_amount=Decimal("10.00"),
        items=[LINE],
        reason="r",
        cancelled_at=NOW,
        was_confirmed=was_confirmed,
    )


def test_only_the_saga_confirms_a_pending_order() -> None:
    with pytest.raises(StateConflict):
        check_transition("pending", "confirmed")
    check_transition("pending", "confirmed", by_saga=True)
    check_transition("pending", "cancelled")
    with pytest.raises(StateConflict):
        check_transition("pending", "processing")


def test_only_the_back_office_cancels_a_shipped_order_and_it_must_say_why() -> None:
    check_transition("shipped", "cancelled")
    for status in ("pending", "confirmed", "processing"):
        check_cancel(status, None, back_office=False)  # the customer's, without a reason
    with pytest.raises(StateConflict) as by_customer:
        check_cancel("shipped", "changed my mind", back_office=False)
    assert by_customer.value.field == "status"
    for blank in (None, "", "   "):
        with pytest.raises(StateConflict) as no_reason:
            check_cancel("shipped", blank, back_office=True)
        assert no_reason.value.field == "reason"
    check_cancel("shipped", "parcel intercepted by the carrier", back_office=True)
    with pytest.raises(StateConflict):
        check_transition("delivered", "cancelled")  # after delivery it is a return


def test_a_purchase_counts_once_confirmed_and_a_never_confirmed_order_never() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    # a: placed pending, confirmed, then cancelled. b: placed pending and cancelled by the saga.
    events: list[OrderCreated | OrderConfirmed | OrderCancelledV1] = [
        created("pending", a),
        confirmed(a),
        cancelled(a, True),
        created("pending", b),
        cancelled(b, False),
    ]
    stats = stats_fold(events)["c1", "USD"]
    assert (stats.orders, stats.cancelled, stats.spent) == (1, 1, Decimal("0.00"))
    sales = sales_fold(events)
    day = sales.days[(NOW.date(), "USD")]
    assert (day.orders, day.cancellations, day.revenue) == (1, 1, Decimal("0.00"))
    assert sales.products[(PRODUCT, "USD")].units == 0


def test_events_from_before_the_saga_keep_their_meaning() -> None:
    order_id = uuid.uuid4()
    v1 = OrderCancelledV1(
        order_id=order_id, customer_id="c1", currency="USD", total_amount=Decimal("10.00"), items=[LINE],
        cancelled_at=NOW,
    )  # fmt: skip
    stats = stats_fold([created("confirmed", order_id), v1])["c1", "USD"]
    assert (stats.orders, stats.cancelled, stats.spent) == (1, 1, Decimal("0.00"))
    assert stats_fold([created("confirmed", uuid.uuid4())])["c1", "USD"].spent == Decimal("10.00")


def test_a_reservation_fills_each_line_with_the_warehouse_holding_most_of_it() -> None:
    big, small, unnamed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    found = line_warehouses(
        [PRODUCT, unnamed],
        [
            ReservedItem(product_id=PRODUCT, warehouse_id=small, quantity=1),
            ReservedItem(product_id=PRODUCT, warehouse_id=big, quantity=4),
        ],
    )
    assert found == [big, None]  # a line the answer does not name keeps its warehouse


def test_entering_a_step_sets_its_deadline_and_done_clears_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_SAGA_PAYMENT_TIMEOUT_S", "3")
    forget_settings()
    saga = OrderSaga(order_id=uuid.uuid4())
    enter(saga, PAYMENT, NOW)
    entered = (saga.deadline_at, saga.waiting_on)  # a copy: mypy would keep the fields narrowed past enter()
    assert entered == (NOW + dt.timedelta(seconds=3), PAYMENT)
    enter(saga, DONE, NOW)
    assert saga.deadline_at is None and saga.waiting_on is None
