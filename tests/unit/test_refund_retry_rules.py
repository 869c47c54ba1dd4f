"""The pure rules of retrying a refused return refund: when staff may retry (apps/returns/rules.py), which
answer of the payment service moves the return, and what the payment service does with a retry
(apps/payment/rules.py plan_refund_retry): refund, settle by refunds made by hand, or refuse, never twice."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from apps.common.errors import InconsistentFields, StateConflict, UnknownReference
from apps.payment.rules import (
    OP_DECLINED,
    PENDING,
    SUCCEEDED,
    NamedRefund,
    RefundRetry,
    plan_refund_retry,
    plan_settlement,
)
from apps.returns.clients import PaymentOperationView, PaymentView
from apps.returns.events import RefundOrder, ReturnRefundRetryRequested, ReturnRefundRetryRequestedV1
from apps.returns.rules import (
    APPROVED,
    COMPLETED,
    RECEIVED,
    REFUND_FAILED,
    REFUNDED,
    REQUESTED,
    STATUSES,
    check_refund_retry,
    check_settle_with,
    check_transition,
    refund_answer_applies,
    refund_asked_at,
)
from apps.returns.services import ReturnService
from outbox.events import decode_payload, encode_payload, payload_as_dict

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 27, 4, tzinfo=dt.UTC)
ASKED_AT = NOW.isoformat()
A, B, C, D = (uuid.UUID(int=n) for n in range(1, 5))


# --- the returns service ------------------------------------------------------------------------------


def test_only_a_refund_failed_return_may_retry_and_only_once_its_last_retry_was_answered() -> None:
    check_refund_retry(REFUND_FAILED, None, NOW)
    for status in set(STATUSES) - {REFUND_FAILED}:
        with pytest.raises(StateConflict) as refused:
            check_refund_retry(status, None, NOW)
        assert refused.value.field == "status" and status in refused.value.message
    with pytest.raises(StateConflict) as awaited:
        check_refund_retry(REFUND_FAILED, ASKED_AT, NOW + dt.timedelta(seconds=5))
    assert awaited.value.field == "status" and ASKED_AT in awaited.value.message
    assert "(5 s ago) still awaits the payment service's answer" in awaited.value.message


def test_an_awaited_retry_says_how_long_ago_it_was_asked_and_which_event_operations_look_for() -> None:
    """A retry whose event was dead-lettered in the payment group is awaited until the letter is redriven:
    the 409 says how long it has waited and names the event, which `just dlq list payment` shows."""
    event_id = str(uuid.UUID(int=99))
    for waited, shown in [
        (dt.timedelta(seconds=90), "90 s"),
        (dt.timedelta(minutes=14, seconds=59), "14 min"),
        (dt.timedelta(hours=5), "5 h"),
        (dt.timedelta(days=3), "3 days"),
    ]:
        with pytest.raises(StateConflict) as awaited:
            check_refund_retry(REFUND_FAILED, ASKED_AT, NOW + waited, event_id)
        message = awaited.value.message
        assert f"({shown} ago)" in message, message
        assert event_id in message and "just dlq list payment --pending" in message


def test_the_refunds_named_to_settle_a_retry_are_each_named_once_and_none_is_the_returns_own() -> None:
    check_settle_with([], [A])
    check_settle_with([B, C], [A])
    with pytest.raises(InconsistentFields) as twice:
        check_settle_with([B, C, B], [A])
    assert twice.value.field == "settle_with[2]" and str(B) in twice.value.message
    with pytest.raises(InconsistentFields) as own:
        check_settle_with([B, A], [D, A])
    assert own.value.field == "settle_with[1]" and "own" in own.value.message


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
    fields: dict[str, Any] = {
        "return_id": A,
        "return_number": "RET-20261127-0000000001",
        "order_id": B,
        "customer_id": "c1",
        "refund": RefundOrder(refund_id=C, amount=Decimal("31.50"), currency="USD", reason="return RET-1"),
        "earlier_refund_ids": [D],
        "refund_asked_at": NOW,
        "requested_at": NOW,
    }
    for event in (ReturnRefundRetryRequested(**fields), ReturnRefundRetryRequested(**fields, settle_with=[A, B])):
        # As Kafka carries it (JSON), and as the outbox row's JSONB gives it back (a dict).
        assert decode_payload("return.refund_retry_requested", 2, encode_payload(event)) == event
        assert decode_payload("return.refund_retry_requested", 2, payload_as_dict(event)) == event
    # A v1 event (written before settle_with) names no refund; a v2 one read by v1 code is a v1 retry.
    v1 = ReturnRefundRetryRequestedV1(**fields)
    read = decode_payload("return.refund_retry_requested", 2, encode_payload(v1))
    assert isinstance(read, ReturnRefundRetryRequested) and read.named_refunds() == []
    named = ReturnRefundRetryRequested(**fields, settle_with=[A])
    assert decode_payload("return.refund_retry_requested", 1, encode_payload(named)) == v1


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


# --- settling by refunds staff name (settle_with) ---------------------------------------------------------


def by_hand(op_id: uuid.UUID, left: Decimal, outcome: str = SUCCEEDED) -> NamedRefund:
    return NamedRefund(op_id, outcome, by_hand=True, left=left)


def test_named_refunds_by_hand_that_cover_the_return_settle_it_whenever_they_were_made() -> None:
    """The case no rule could settle: refunded by hand on receipt of the complaint, before the return asked,
    so its refund found nothing refundable. Named, it settles the return, claiming what it needs."""
    assert plan_settlement(ASKED, [(A, "failed")], [by_hand(B, Decimal("50.00"))]) == RefundRetry(settled_by={B: ASKED})
    both = plan_settlement(ASKED, [(A, "failed")], [by_hand(B, Decimal("10.00")), by_hand(C, Decimal("25.00"))])
    assert both == RefundRetry(settled_by={B: Decimal("10.00"), C: Decimal("20.00")})


def test_a_refund_named_twice_refuses_the_retry_rather_than_counting_it_twice() -> None:
    """Found by review (W): [B, B] with 20.00 left of B claimed 20.00, then replaced that claim by 10.00 and
    settled a 30.00 return. The returns API refuses the duplicate (422); the consumer decides again."""
    plan = plan_settlement(ASKED, [(A, "failed")], [by_hand(B, Decimal("20.00")), by_hand(B, Decimal("20.00"))])
    assert plan == RefundRetry(refused=f"settle_with: refund {B} is named twice")


def test_named_refunds_that_do_not_cover_the_return_refuse_it_and_never_ask_the_provider() -> None:
    plan = plan_settlement(ASKED, [(A, "failed")], [by_hand(B, Decimal("10.00")), by_hand(C, Decimal("0.00"))])
    assert not plan.refund and not plan.settled_by
    assert plan.refused is not None and plan.refused.startswith("settle_with:") and "10.00 of the 30.00" in plan.refused


@pytest.mark.parametrize(
    ("named", "fault"),
    [
        (NamedRefund(B), "is no refund of this order's payment"),
        (NamedRefund(B, SUCCEEDED, by_hand=False, left=ASKED), "was not made by hand"),
        (by_hand(B, ASKED, PENDING), "still awaits the provider's answer"),
        (by_hand(B, ASKED, OP_DECLINED), "did not go through (declined)"),
    ],
)
def test_a_named_refund_that_cannot_settle_refuses_the_retry_naming_it(named: NamedRefund, fault: str) -> None:
    plan = plan_settlement(ASKED, [(A, "failed")], [by_hand(C, ASKED), named])
    assert not plan.refund and not plan.settled_by
    assert plan.refused is not None and plan.refused.startswith(f"settle_with: refund {B} {fault}"), plan.refused


def test_a_return_refunded_by_its_own_refund_is_settled_by_it_whatever_staff_name() -> None:
    assert plan_settlement(ASKED, [(A, SUCCEEDED)], [by_hand(B, ASKED)]) == RefundRetry(already_refunded_by=A)
    pending = plan_settlement(ASKED, [(A, PENDING)], [by_hand(B, ASKED)])
    assert pending.refused is not None and str(A) in pending.refused and not pending.settled_by
    nothing = plan_settlement(Decimal("0.00"), [(A, "failed")], [by_hand(B, ASKED)])
    assert nothing.refused is not None and not nothing.settled_by and not nothing.refund


# --- the returns API's check of the named refunds, against the ledger the payments API answers ----------------


class Ledger:
    """A stand-in PaymentClient: the order's payment with these refund operations."""

    def __init__(self, *operations: PaymentOperationView) -> None:
        self.payment = PaymentView(id=D, status="refunded", operations=list(operations))

    async def of_order(self, order_id: uuid.UUID) -> list[PaymentView]:
        return [self.payment]


def operation(
    op_id: uuid.UUID, amount: str, *, by_hand: bool = True, outcome: str = SUCCEEDED, counted: str = "0"
) -> PaymentOperationView:
    return PaymentOperationView(
        id=op_id,
        kind="refund",
        amount=Decimal(amount),
        outcome=outcome,
        by_hand=by_hand,
        counted_for_returns=Decimal(counted),
    )


async def check(ledger: Ledger, named: list[uuid.UUID]) -> None:
    service = ReturnService(None, None, None, ledger, None)  # type: ignore[arg-type]
    request = SimpleNamespace(order_id=B, total_refund_amount=ASKED)
    await service._check_settlement(request, named, [A])  # type: ignore[arg-type]


async def test_the_api_refuses_at_once_what_the_payment_service_would_refuse_naming_the_entry() -> None:
    """POST /retry-refund with settle_with answers 422 for a name that is no refund by hand of the order's
    payment, 409 for one that did not go through or refunds that do not cover the return, before any event."""
    ledger = Ledger(
        operation(A, "30.00", by_hand=False, outcome=OP_DECLINED),  # the return's own refused refund
        operation(B, "50.00"),
        operation(C, "20.00", counted="20.00"),
        operation(D, "30.00", outcome=PENDING),
    )
    await check(ledger, [B])
    await check(ledger, [C, B])
    for named, field, problem, fault in [
        ([B, uuid.UUID(int=77)], "settle_with[1]", UnknownReference, "is no refund of this order's payment"),
        ([A], "settle_with[0]", UnknownReference, "was not made by hand"),
        ([D], "settle_with[0]", StateConflict, "still awaits the provider's answer"),
        ([C], "settle_with", StateConflict, "cover only 0.00 of the 30.00"),
    ]:
        with pytest.raises(problem) as refused:
            await check(ledger, named)
        assert refused.value.field == field and fault in refused.value.message, refused.value.message
