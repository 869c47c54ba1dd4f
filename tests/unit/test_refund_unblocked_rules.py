"""Session 29: a return's refund refused because a refund by hand awaited the provider's answer is asked
again by the returns service once that refund fails (apps/payment/rules.py refused_while_awaited and
blocked_by, apps/returns/rules.py asks_again_on_its_own): the refusal names its blockers in a form read
back exactly, and only a refund_failed return with no retry awaited, held back by that refund, asks again."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from apps.payment.rules import (
    NamedRefund,
    blocked_by,
    plan_refund_retry,
    plan_settlement,
    refused_while_awaited,
    return_refund_refusal,
)
from apps.returns.rules import APPROVED, RECEIVED, REFUND_FAILED, REFUNDED, asks_again_on_its_own

pytestmark = pytest.mark.unit

A, B, C = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)


def test_both_refusals_for_a_pending_refund_by_hand_name_their_blockers_back() -> None:
    first = return_refund_refusal("USD", "USD", [A, B])
    retry = plan_refund_retry(Decimal("30.00"), [(C, "failed")], [], [B]).refused
    assert first is not None and retry is not None
    assert blocked_by(first) == [A, B]
    assert blocked_by(retry) == [B]
    # The wording is what it was (returns show it as refund_error; operations.md quotes it).
    assert retry == f"refund {B} made by hand still awaits the provider's answer: retry after it"
    assert first.startswith(f"refund {A}, {B} made by hand still awaits the provider's answer: once it is answered")
    assert blocked_by(refused_while_awaited([C], "anything")) == [C]


def test_no_other_refusal_names_a_blocker() -> None:
    settle = plan_settlement(Decimal("30.00"), [], [NamedRefund(A, "pending", True, Decimal("30.00"))]).refused
    own = plan_refund_retry(Decimal("30.00"), [(A, "pending")], []).refused
    assert settle is not None and own is not None
    for reason in (
        settle,  # staff named a pending refund: their word that it paid the return, not a blocker
        own,  # the return's own refund pending
        "expired_or_canceled_card",
        "cannot refund 30.00: 0.00 of 30.00 captured is refundable",
        "refund not-a-uuid made by hand still awaits the provider's answer: retry after it",
        f"refund {A}, junk made by hand still awaits the provider's answer: retry after it",
        f"note: refund {A} made by hand still awaits the provider's answer: retry after it",
        "",
    ):
        assert blocked_by(reason) == [], reason


def test_only_a_refused_return_held_back_by_that_refund_and_not_retried_asks_again() -> None:
    assert asks_again_on_its_own(REFUND_FAILED, None, [A, B], A)
    assert asks_again_on_its_own(REFUND_FAILED, None, [A, B], B)
    assert not asks_again_on_its_own(REFUND_FAILED, None, [A], B)  # another refund by hand failed
    assert not asks_again_on_its_own(REFUND_FAILED, None, [], A)  # refused for another reason
    assert not asks_again_on_its_own(REFUND_FAILED, "2026-11-27T12:00:00+00:00", [A], A)  # staff's retry awaited
    for status in (APPROVED, RECEIVED, REFUNDED):
        assert not asks_again_on_its_own(status, None, [A], A)
