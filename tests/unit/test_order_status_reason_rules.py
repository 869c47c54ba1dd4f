"""Why an order is cancelled, as its answer says it (apps/order/rules.py ``status_reason``): every reason the
saga and the cancel paths write maps to one documented code, a person's free text never comes through; and
when it entered its status (``status_changed_at``)."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.order.app import create_app
from apps.order.rules import CANCELLED, PENDING, SAGA, STATUS_REASONS, STATUSES, status_changed_at, status_reason
from apps.order.saga_state import OUT_OF_STOCK, PAYMENT_DECLINED, TIMEOUT
from apps.order.transitions import SERVICE
from apps.warehouse.rules import INSUFFICIENT_STOCK, INVALID_QUANTITY, NO_ITEMS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("reason", [OUT_OF_STOCK, PAYMENT_DECLINED, TIMEOUT])
def test_the_sagas_own_reasons_are_their_codes(reason: str) -> None:
    assert status_reason(CANCELLED, SAGA, reason, None) == reason


@pytest.mark.parametrize("warehouse_code", [INVALID_QUANTITY, NO_ITEMS, "a_code_added_later"])
def test_the_warehouses_other_refusals_are_reservation_refused(warehouse_code: str) -> None:
    """The saga passes these through as the warehouse gave them (its shortage became out_of_stock)."""
    assert warehouse_code != INSUFFICIENT_STOCK
    assert status_reason(CANCELLED, SAGA, warehouse_code, None) == "reservation_refused"


@pytest.mark.parametrize(
    ("role", "code"),
    [
        ("customer", "cancelled_by_customer"),
        ("staff", "cancelled_by_staff"),
        ("admin", "cancelled_by_staff"),
        (None, "requested"),  # a row written before the API recorded the caller's role
    ],
)
@pytest.mark.parametrize("reason", [None, "changed my mind", "out_of_stock"])
def test_a_persons_cancellation_is_named_by_their_role_whatever_they_wrote(
    role: str | None, code: str, reason: str | None
) -> None:
    assert status_reason(CANCELLED, SERVICE, reason, role) == code


def test_a_cancelled_order_without_its_history_row_is_requested() -> None:
    assert status_reason(CANCELLED, None, None, None) == "requested"


@pytest.mark.parametrize("status", [s for s in STATUSES if s != CANCELLED])
def test_only_a_cancelled_order_has_a_reason(status: str) -> None:
    assert status_reason(status, SAGA, OUT_OF_STOCK, None) is None
    assert status_reason(status, SERVICE, "ops", "staff") is None


def test_the_codes_are_the_documented_enum() -> None:
    order = create_app().openapi_schema.to_schema()["components"]["schemas"]["OrderOut"]["properties"]
    documented = order["status_reason"]
    assert documented["enum"] == [*STATUS_REASONS, None]
    assert [code for code in STATUS_REASONS if code not in documented["description"]] == []


@pytest.mark.parametrize("status", STATUSES)
def test_a_pending_order_entered_its_status_when_placed_any_other_by_its_history_row(status: str) -> None:
    placed, moved = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC), dt.datetime(2026, 11, 28, 4, 5, tzinfo=dt.UTC)
    assert status_changed_at(status, placed, moved) == (placed if status == PENDING else moved)
    assert status_changed_at(status, placed, None) == (placed if status == PENDING else None)
