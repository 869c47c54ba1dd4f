"""Unit tests for the warehouse's pure rules (apps/warehouse/rules.py): stock checks and reservation maths."""

from __future__ import annotations

import uuid

import pytest

from apps.common.errors import InvalidField, StateConflict
from apps.warehouse.rules import (
    DEFAULT_WAREHOUSE_ID,
    INSUFFICIENT_STOCK,
    INVALID_QUANTITY,
    MAX_QUANTITY,
    NO_ITEMS,
    Allocation,
    Ledger,
    Line,
    Shortage,
    Stock,
    can_release,
    check_on_hand,
    check_quantity,
    merge_lines,
    plan_reservation,
)

pytestmark = pytest.mark.unit

OTHER_WAREHOUSE = uuid.UUID("00000000-0000-0000-0000-0000000000ff")


def product() -> uuid.UUID:
    return uuid.uuid4()


def stock(product_id: uuid.UUID, on_hand: int, reserved: int = 0, warehouse: uuid.UUID = DEFAULT_WAREHOUSE_ID) -> Stock:
    return Stock(product_id, warehouse, on_hand, reserved)


# --- stock checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("quantity", [0, 1, MAX_QUANTITY])
def test_quantities_in_range_are_accepted(quantity: int) -> None:
    assert check_quantity(quantity) == quantity


@pytest.mark.parametrize(("quantity", "message"), [(-1, "greater than or equal to 0"), (MAX_QUANTITY + 1, "at most")])
def test_quantities_out_of_range_name_the_quantity_field(quantity: int, message: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_quantity(quantity)
    assert caught.value.field == "quantity"
    assert message in caught.value.message


def test_on_hand_may_go_down_to_what_is_reserved_but_not_below() -> None:
    assert check_on_hand(5, reserved=5) == 5
    assert check_on_hand(0, reserved=0) == 0
    with pytest.raises(StateConflict, match="4 units are reserved"):
        check_on_hand(3, reserved=4)


def test_available_is_on_hand_minus_reserved() -> None:
    assert stock(product(), 10, 4).available == 6


@pytest.mark.parametrize(("status", "releasable"), [("reserved", True), ("released", False), ("failed", False)])
def test_only_a_held_reservation_can_be_released(status: str, releasable: bool) -> None:
    assert can_release(status) is releasable


def test_merge_lines_sums_a_product_named_twice_and_sorts_by_product_id() -> None:
    a, b = sorted([product(), product()])
    assert merge_lines([Line(b, 1), Line(a, 2), Line(b, 3)]) == {a: 2, b: 4}
    assert list(merge_lines([Line(b, 1), Line(a, 1)])) == [a, b]


# --- planning one order ---------------------------------------------------------------------------


def test_an_order_that_fits_is_reserved_line_by_line() -> None:
    a, b = sorted([product(), product()])
    plan = plan_reservation([Line(b, 2), Line(a, 1)], [stock(a, 1), stock(b, 5)])
    assert plan.reserved
    assert plan.allocations == (Allocation(a, DEFAULT_WAREHOUSE_ID, 1), Allocation(b, DEFAULT_WAREHOUSE_ID, 2))
    assert (plan.reason, plan.shortages) == (None, ())


def test_one_short_line_fails_the_whole_order_and_every_shortage_is_listed() -> None:
    enough, short, unknown = product(), product(), product()
    plan = plan_reservation(
        [Line(enough, 1), Line(short, 3), Line(unknown, 2)],
        [stock(enough, 10), stock(short, 5, reserved=3)],
    )
    assert not plan.reserved
    assert plan.reason == INSUFFICIENT_STOCK
    assert plan.allocations == ()  # all or none: the line that fits holds nothing either
    assert sorted(plan.shortages, key=lambda s: s.product_id) == sorted(
        [Shortage(short, 3, 2), Shortage(unknown, 2, 0)],  # a product without stock has 0 available
        key=lambda s: s.product_id,
    )


def test_lines_of_one_product_are_checked_together() -> None:
    p = product()
    plan = plan_reservation([Line(p, 2), Line(p, 2)], [stock(p, 3)])
    assert plan.shortages == (Shortage(p, 4, 3),)


def test_a_line_takes_from_the_default_warehouse_first_then_splits_over_the_fullest() -> None:
    p = product()
    third = uuid.UUID("00000000-0000-0000-0000-00000000000f")
    rows = [stock(p, 2, warehouse=OTHER_WAREHOUSE), stock(p, 1), stock(p, 5, warehouse=third)]
    plan = plan_reservation([Line(p, 7)], rows)
    assert plan.allocations == (
        Allocation(p, DEFAULT_WAREHOUSE_ID, 1),
        Allocation(p, third, 5),
        Allocation(p, OTHER_WAREHOUSE, 1),
    )


def test_availability_is_summed_over_warehouses_for_a_shortage() -> None:
    p = product()
    plan = plan_reservation([Line(p, 9)], [stock(p, 2), stock(p, 3, warehouse=OTHER_WAREHOUSE)])
    assert plan.shortages == (Shortage(p, 9, 5),)


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_line_without_a_positive_quantity_fails_the_order(quantity: int) -> None:
    p = product()
    plan = plan_reservation([Line(p, quantity)], [stock(p, 10)])
    assert (plan.reserved, plan.reason, plan.allocations) == (False, INVALID_QUANTITY, ())


def test_an_order_without_lines_fails() -> None:
    assert plan_reservation([], []).reason == NO_ITEMS


# --- the ledger: many orders against one locked stock ---------------------------------------------


def test_fifty_orders_for_ten_units_reserve_ten_and_fail_forty() -> None:
    p = product()
    ledger = Ledger([stock(p, 10)])
    plans = [ledger.reserve([Line(p, 1)]) for _ in range(50)]
    assert [plan.reserved for plan in plans] == [True] * 10 + [False] * 40
    assert {plan.shortages for plan in plans[10:]} == {(Shortage(p, 1, 0),)}
    assert ledger.changes() == {(p, DEFAULT_WAREHOUSE_ID): 10}


def test_a_failed_order_changes_nothing_in_the_ledger() -> None:
    a, b = product(), product()
    ledger = Ledger([stock(a, 5), stock(b, 1)])
    assert not ledger.reserve([Line(a, 2), Line(b, 2)]).reserved
    assert ledger.changes() == {}
    assert ledger.reserve([Line(a, 5)]).reserved  # the failed order held nothing of a


def test_release_gives_units_back_and_changes_net_out() -> None:
    p = product()
    ledger = Ledger([stock(p, 3, reserved=1)])
    plan = ledger.reserve([Line(p, 2)])
    assert not ledger.reserve([Line(p, 1)]).reserved
    ledger.release(plan.allocations)
    assert ledger.reserve([Line(p, 1)]).reserved
    assert ledger.changes() == {(p, DEFAULT_WAREHOUSE_ID): 1}
    ledger.release([Allocation(p, DEFAULT_WAREHOUSE_ID, 2)])  # the 1 from before the batch, and ours
    assert ledger.changes() == {(p, DEFAULT_WAREHOUSE_ID): -1}


def test_changes_come_in_lock_order_and_leave_out_rows_that_net_to_zero() -> None:
    a, b = sorted([product(), product()])
    ledger = Ledger([stock(b, 5), stock(a, 5, warehouse=OTHER_WAREHOUSE), stock(a, 5)])
    ledger.reserve([Line(b, 1)])
    ledger.reserve([Line(a, 7)])
    held = ledger.reserve([Line(b, 2)])
    ledger.release(held.allocations)
    assert list(ledger.changes().items()) == [
        ((a, DEFAULT_WAREHOUSE_ID), 5),
        ((a, OTHER_WAREHOUSE), 2),
        ((b, DEFAULT_WAREHOUSE_ID), 1),
    ]


def test_releasing_more_than_is_reserved_is_refused() -> None:
    p = product()
    ledger = Ledger([stock(p, 5, reserved=1)])
    with pytest.raises(StateConflict):
        ledger.release([Allocation(p, DEFAULT_WAREHOUSE_ID, 2)])
    with pytest.raises(KeyError):
        ledger.release([Allocation(product(), DEFAULT_WAREHOUSE_ID, 1)])
