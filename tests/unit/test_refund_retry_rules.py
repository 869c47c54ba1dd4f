"""The pure rules of retrying a refused return refund: when staff may retry (apps/returns/rules.py), which
answer of the payment service moves the return, and what the payment service does with a retry
(apps/payment/rules.py plan_refund_retry): refund, settle by refunds made by hand, or refuse, never twice."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from apps.common.errors import StateConflict
from apps.payment.rules import OP_DECLINED, PENDING, SUCCEEDED, RefundRetry, plan_refund_retry
from apps.returns.events import RefundOrder, ReturnRefundRetryRequested
from apps.returns.rules import (
    APPROVED,
    COMPLETED,
    RECEIVED,
    REFUND_FAILED,
    REFUNDED,
    REQUESTED,
    STATUSES,
    check_refund_retry,
    check_transition,
    refund_answer_applies,
    refund_asked_at,
)
from outbox.events import decode_payload, encode_payload, payload_as_dict

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 27, 4, tzinfo=dt.UTC)
ASKED_AT = NOW.isoformat()
A, B, C, D = (uuid.UUID(int=n) for n in range(1, 5))


# --- the returns service ------------------------------------------------------------------------------


def test_only_a_refund_failed_return_may_retry_and_only_once_its_last_retry_was_answered() -> None:
    check_refund_retry(REFUND_FAILED, None)
    for status in set(STATUSES) - {REFUND_FAILED}:
        with pytest.raises(StateConflict) as refused:
            check_refund_retry(status, None)
        assert refused.value.field == "status" and status in refused.value.message
    with pytest.raises(StateConflict) as awaited:
        check_refund_retry(REFUND_FAILED, ASKED_AT)
    assert awaited.value.field == "status" and ASKED_AT in awaited.value.message


def test_an_answer_moves_the_return_when_it_asked_first_or_while_its_retry_is_awaited() -> None:
    assert refund_answer_applies(RECEIVED, None) and refund_answer_applies(APPROVED, None)
    assert refund_answer_applies(REFUND_FAILED, ASKED_AT)
    # A copy of the answer that made it refund_failed (or refunded) changes nothing.
    assert not refund_answer_applies(REFUND_FAILED, None)
    for status in (REQUESTED, REFUNDED, COMPLETED, "rejected", "expired"):
        assert not refund_answer_applies(status, None) and not refund_answer_applies(status, ASKED_AT)


def test_refund_failed_moves_on_only_to_refunded() -> None:
    check_transition(REFUND_FAILED, REFUNDED)
    with pytest.raises(StateConflict):
        check_transition(REFUND_FAILED, COMPLETED)


def test_a_return_first_asked_for_its_refund_on_approval_if_refund_only_else_on_receipt() -> None:
    approved, received = NOW - dt.timedelta(days=2), NOW
    assert refund_asked_at("refund_only", approved, None) == approved
    assert refund_asked_at("refund", approved, received) == received


def test_the_retry_event_round_trips() -> None:
    event = ReturnRefundRetryRequested(
        return_id=A,
        return_number="RET-20261127-0000000001",
        order_id=B,
        customer_id="c1",
        refund=RefundOrder(refund_id=C, amount=Decimal("31.50"), currency="USD", reason="return RET-1"),
        earlier_refund_ids=[D],
        refund_asked_at=NOW,
        requested_at=NOW,
    )
    # As Kafka carries it (JSON), and as the outbox row's JSONB gives it back (a dict).
    assert decode_payload("return.refund_retry_requested", 1, encode_payload(event)) == event
    assert decode_payload("return.refund_retry_requested", 1, payload_as_dict(event)) == event


# --- the payment service --------------------------------------------------------------------------------

ASKED = Decimal("30.00")


def test_a_retry_with_nothing_refunded_meanwhile_asks_the_provider() -> None:
    assert plan_refund_retry(ASKED, [(A, OP_DECLINED)], []) == RefundRetry(refund=True)


def test_a_return_refunded_by_one_of_its_own_refunds_is_settled_not_refunded_again() -> None:
    assert plan_refund_retry(ASKED, [(A, OP_DECLINED), (B, SUCCEEDED)], []) == RefundRetry(already_refunded_by=B)


def test_a_retry_while_a_refund_of_the_return_is_pending_is_refused() -> None:
    plan = plan_refund_retry(ASKED, [(A, PENDING)], [])
    assert not plan.refund and plan.refused is not None and str(A) in plan.refused


def test_refunds_by_hand_that_cover_the_return_settle_it_claiming_only_what_it_needs() -> None:
    plan = plan_refund_retry(ASKED, [(A, OP_DECLINED)], [(B, Decimal("10.00")), (C, Decimal("25.00")), (D, ASKED)])
    assert plan == RefundRetry(settled_by={B: Decimal("10.00"), C: Decimal("20.00")})
    assert plan_refund_retry(ASKED, [], [(B, Decimal("0.00")), (C, ASKED)]) == RefundRetry(settled_by={C: ASKED})


def test_refunds_by_hand_that_cover_part_of_the_return_refuse_the_retry_saying_so() -> None:
    plan = plan_refund_retry(ASKED, [(A, OP_DECLINED)], [(B, Decimal("10.00"))])
    assert not plan.refund and not plan.settled_by
    assert plan.refused is not None and "10.00" in plan.refused and "by hand" in plan.refused


def test_refunds_by_hand_counted_for_other_returns_already_do_not_settle_this_one() -> None:
    assert plan_refund_retry(ASKED, [(A, OP_DECLINED)], [(B, Decimal("0.00"))]) == RefundRetry(refund=True)


def test_a_refund_by_hand_awaiting_its_answer_refuses_a_retry_it_does_not_cover_already() -> None:
    # If it goes through, the provider asked for the whole as well would have refunded the return twice.
    plan = plan_refund_retry(ASKED, [(A, OP_DECLINED)], [], [B])
    assert not plan.refund and not plan.settled_by
    assert plan.refused is not None and str(B) in plan.refused
    partly = plan_refund_retry(ASKED, [(A, OP_DECLINED)], [(C, Decimal("10.00"))], [B])
    assert not partly.refund and partly.refused is not None and str(B) in partly.refused
    # Covered by refunds by hand that went through: settled, whatever else is awaited.
    assert plan_refund_retry(ASKED, [(A, OP_DECLINED)], [(C, ASKED)], [B]) == RefundRetry(settled_by={C: ASKED})


def test_a_retry_of_nothing_claims_no_refund_by_hand_and_goes_to_the_provider_checks() -> None:
    # A 0.00 refund (asked before units that cost nothing stopped asking) is refused by check_refund as
    # the first one was, not "settled" by nobody while a refund by hand is lying around.
    assert plan_refund_retry(Decimal("0.00"), [(A, "failed")], [(B, ASKED)]) == RefundRetry(refund=True)
