"""Unit tests for the payment's pure rules (apps/payment/rules.py): transitions, capture, void, refund,
compensation of a cancelled order's payment, minor units, backoff."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.common.errors import InvalidField, StateConflict
from apps.payment.rules import (
    AUTHORIZED,
    CAPTURED,
    DECLINED,
    FAILED,
    MAX_RETRY_DELAY_S,
    PARTIALLY_REFUNDED,
    PENDING,
    REFUND,
    REFUNDED,
    STATUSES,
    TRANSITIONS,
    VOID,
    VOIDED,
    Compensation,
    check_authorization,
    check_capture,
    check_refund,
    check_transition,
    check_void,
    compensation,
    from_minor,
    refundable,
    retry_delay,
    status_after_refund,
    to_minor,
)

pytestmark = pytest.mark.unit

D = Decimal


def test_every_status_has_its_transitions_and_final_ones_have_none() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    for final in (REFUNDED, VOIDED, DECLINED, FAILED):
        assert TRANSITIONS[final] == frozenset()


@pytest.mark.parametrize(
    ("current", "new"),
    [(PENDING, AUTHORIZED), (PENDING, DECLINED), (PENDING, FAILED), (AUTHORIZED, CAPTURED), (AUTHORIZED, VOIDED),
     (CAPTURED, PARTIALLY_REFUNDED), (CAPTURED, REFUNDED), (PARTIALLY_REFUNDED, PARTIALLY_REFUNDED),
     (PARTIALLY_REFUNDED, REFUNDED)],
)  # fmt: skip
def test_allowed_transitions(current: str, new: str) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(PENDING, CAPTURED), (AUTHORIZED, REFUNDED), (CAPTURED, VOIDED), (VOIDED, AUTHORIZED), (DECLINED, AUTHORIZED),
     (REFUNDED, PARTIALLY_REFUNDED), (FAILED, AUTHORIZED)],
)  # fmt: skip
def test_refused_transitions_are_a_409_on_status(current: str, new: str) -> None:
    with pytest.raises(StateConflict) as caught:
        check_transition(current, new)
    assert caught.value.field == "status"


def test_capture_takes_all_that_was_authorized_unless_less_is_asked() -> None:
    assert check_capture(AUTHORIZED, D("10.00"), None) == D("10.00")
    assert check_capture(AUTHORIZED, D("10.00"), D("7.50")) == D("7.50")


def test_capture_refuses_more_than_authorized_a_bad_amount_and_a_payment_not_authorized() -> None:
    with pytest.raises(StateConflict) as above:
        check_capture(AUTHORIZED, D("10.00"), D("10.01"))
    assert above.value.field == "amount"
    with pytest.raises(InvalidField):
        check_capture(AUTHORIZED, D("10.00"), D("0"))
    for status in (PENDING, CAPTURED, VOIDED, DECLINED):
        with pytest.raises(StateConflict):
            check_capture(status, D("10.00"), None)


def test_only_an_authorized_payment_is_voided() -> None:
    check_void(AUTHORIZED)
    for status in (PENDING, CAPTURED, PARTIALLY_REFUNDED, VOIDED, DECLINED):
        with pytest.raises(StateConflict):
            check_void(status)


def test_refundable_counts_refunds_awaiting_an_answer() -> None:
    assert refundable(D("10"), D("3"), D("2")) == D("5")
    assert refundable(D("10"), D("10")) == D("0")


def test_refund_is_partial_and_never_above_what_was_captured() -> None:
    assert check_refund(CAPTURED, D("10.00"), D("0"), D("0"), D("4.00")) == D("4.00")
    assert check_refund(PARTIALLY_REFUNDED, D("10.00"), D("4.00"), D("0"), None) == D("6.00")
    with pytest.raises(StateConflict) as above:
        check_refund(PARTIALLY_REFUNDED, D("10.00"), D("4.00"), D("0"), D("6.01"))
    assert above.value.field == "amount"
    with pytest.raises(StateConflict):  # a pending refund already claims part of it
        check_refund(CAPTURED, D("10.00"), D("0"), D("8.00"), D("3.00"))


def test_refund_refuses_a_bad_amount_before_looking_at_the_state() -> None:
    for bad in (D("0"), D("-1"), D("1.001"), D("NaN"), D("Infinity")):
        with pytest.raises(InvalidField) as caught:
            check_refund(AUTHORIZED, D("10"), D("0"), D("0"), bad)
        assert caught.value.field == "amount"


def test_refund_needs_a_captured_payment_with_something_left() -> None:
    for status in (PENDING, AUTHORIZED, VOIDED, REFUNDED, DECLINED):
        with pytest.raises(StateConflict) as caught:
            check_refund(status, D("10"), D("0"), D("0"), None)
        assert caught.value.field == "status"


def test_status_after_refund() -> None:
    assert status_after_refund(D("10"), D("4")) == PARTIALLY_REFUNDED
    assert status_after_refund(D("10"), D("10")) == REFUNDED


def test_compensation_voids_an_authorization_and_refunds_what_was_captured() -> None:
    assert compensation(AUTHORIZED, D("10"), D("0"), D("0"), operation_in_flight=False) == Compensation(VOID, D("10"))
    assert compensation(CAPTURED, D("10"), D("10"), D("0"), operation_in_flight=False) == Compensation(REFUND, D("10"))
    partly = compensation(PARTIALLY_REFUNDED, D("10"), D("10"), D("4"), operation_in_flight=False)
    assert partly == Compensation(REFUND, D("6"))


def test_compensation_waits_for_an_answer_and_leaves_payments_that_hold_nothing() -> None:
    assert compensation(AUTHORIZED, D("10"), D("0"), D("0"), operation_in_flight=True) is None
    assert compensation(PENDING, D("10"), D("0"), D("0"), operation_in_flight=False) is None
    for status in (VOIDED, DECLINED, FAILED, REFUNDED):
        assert compensation(status, D("10"), D("10"), D("10"), operation_in_flight=False) is None


def test_authorization_requests_are_checked_field_by_field() -> None:
    check_authorization(D("12.34"), "USD", "tok_visa")
    cases = [
        ((D("0"), "USD", "tok_visa", 1), "amount"),
        ((D("1.234"), "USD", "tok_visa", 1), "amount"),
        ((D("10000000000"), "USD", "tok_visa", 1), "amount"),
        ((D("1"), "US", "tok_visa", 1), "currency"),
        ((D("1"), "U$D", "tok_visa", 1), "currency"),
        ((D("1"), "USD", "", 1), "payment_method.token"),
        ((D("1"), "USD", "tok_visa", 0), "attempt"),
    ]
    for args, field in cases:
        with pytest.raises(InvalidField) as caught:
            check_authorization(*args)
        assert caught.value.field == field


def test_minor_units() -> None:
    assert to_minor(D("12.34"), "USD") == 1234
    assert to_minor(D("12.345"), "EUR") == 1235
    assert to_minor(D("500"), "JPY") == 500
    assert from_minor(1234, "USD") == D("12.34")
    assert from_minor(500, "jpy") == D("500")


def test_retry_delay_grows_and_is_capped() -> None:
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[0] == 0.5
    assert max(delays) == MAX_RETRY_DELAY_S
