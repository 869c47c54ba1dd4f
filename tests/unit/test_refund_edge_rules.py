"""Session 28's refund rules, pure: a refund the provider never answers is asked about after a deadline
(apps/payment/rules.py asks_refund_status, apps/payment/provider.py classify_refund_status); a refund in
another currency than its payment's is refused; a return's refund waits for no refund by hand still awaited
(return_refund_refusal); an awaited retry may be abandoned, audited (apps/returns/rules.py)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from apps.common.errors import InconsistentFields, StateConflict
from apps.common.settings import forget_settings
from apps.payment.provider import NO_RECORD, classify_refund_status
from apps.payment.rules import (
    AUTHORIZE,
    CAPTURE,
    OP_FAILED,
    PENDING,
    REFUND,
    SUCCEEDED,
    VOID,
    asks_refund_status,
    check_currency,
    return_refund_refusal,
)
from apps.returns.rules import ABANDON_AWAITED, REFUND_FAILED, check_refund_retry

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)
AFTER = dt.timedelta(minutes=15)
A, B = uuid.UUID(int=1), uuid.UUID(int=2)


def test_only_a_refund_unanswered_past_the_deadline_is_asked_about() -> None:
    assert asks_refund_status(REFUND, NOW - AFTER, NOW, AFTER)
    assert asks_refund_status(REFUND, NOW - dt.timedelta(days=2), NOW, AFTER)
    assert not asks_refund_status(REFUND, NOW - AFTER + dt.timedelta(seconds=1), NOW, AFTER)
    for kind in (AUTHORIZE, CAPTURE, VOID):  # the saga's deadline answers those
        assert not asks_refund_status(kind, NOW - dt.timedelta(days=2), NOW, AFTER)


@pytest.mark.parametrize(
    ("status", "body", "outcome", "code"),
    [
        (200, {"id": "re_1", "object": "refund", "status": "succeeded"}, SUCCEEDED, None),
        (200, {"object": "refund", "status": "failed", "failure_code": "expired_or_canceled_card"}, OP_FAILED,
         "expired_or_canceled_card"),
        # No refund under the key: the provider never acted on any call, failed (safe to retry: a new key).
        (404, {"error": {"code": "resource_missing"}}, OP_FAILED, NO_RECORD),
        # Still deciding, or any other answer: nothing known, asked again later.
        (200, {"object": "refund", "status": "pending"}, PENDING, "refund_status_pending"),
        (404, {"error": {"code": "unknown_endpoint"}}, PENDING, "unknown_endpoint"),
        (401, {"error": {"code": "unauthorized"}}, PENDING, "unauthorized"),
    ],
)  # fmt: skip
def test_the_providers_status_answer_settles_the_refund_or_leaves_it_pending(
    status: int, body: dict[str, object], outcome: str, code: str | None
) -> None:
    result = classify_refund_status(status, body, 1)
    assert (result.outcome, result.code) == (outcome, code)
    assert result.reference == ("re_1" if outcome == SUCCEEDED else None)


def test_a_refund_in_another_currency_than_its_payment_is_refused_422() -> None:
    check_currency("usd", "USD")
    with pytest.raises(InconsistentFields) as refused:
        check_currency("EUR", "USD")
    assert (refused.value.field, refused.value.status_code) == ("currency", 422)
    assert "EUR" in refused.value.message and "USD" in refused.value.message


def test_a_returns_refund_is_refused_while_a_refund_by_hand_awaits_the_provider_naming_it() -> None:
    assert return_refund_refusal("USD", "USD", []) is None
    refused = return_refund_refusal("USD", "USD", [A, B])
    assert refused is not None
    assert str(A) in refused and str(B) in refused and "settle_with" in refused
    assert return_refund_refusal("EUR", "USD", []) == "the refund is in EUR, the payment in USD"


def test_an_awaited_retry_may_be_abandoned_only_by_a_named_person_and_only_if_one_is_awaited() -> None:
    asked_at = (NOW - dt.timedelta(hours=3)).isoformat()
    with pytest.raises(StateConflict) as awaited:
        check_refund_retry(REFUND_FAILED, asked_at, NOW)
    assert ABANDON_AWAITED in awaited.value.message  # the 409 names the way out
    check_refund_retry(REFUND_FAILED, asked_at, NOW, abandon=True, requested_by="ops@example.com")
    with pytest.raises(InconsistentFields) as nobody:
        check_refund_retry(REFUND_FAILED, asked_at, NOW, abandon=True)
    assert nobody.value.field == "requested_by"
    with pytest.raises(InconsistentFields) as nothing:
        check_refund_retry(REFUND_FAILED, None, NOW, abandon=True, requested_by="ops@example.com")
    assert nothing.value.field == ABANDON_AWAITED
    with pytest.raises(StateConflict):  # only a refund_failed return, as any retry
        check_refund_retry("refunded", asked_at, NOW, abandon=True, requested_by="ops@example.com")


def test_the_status_deadline_is_a_setting_refused_below_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """PAYMENT_REFUND_STATUS_AFTER_S: 900 s unless set; below 60 s the worker and the API do not start (a
    "no such refund" could then race a request of ours still on its way to the provider)."""
    from apps.payment.operations import refund_status_after

    monkeypatch.delenv("PAYMENT_REFUND_STATUS_AFTER_S", raising=False)
    forget_settings()
    assert refund_status_after() == dt.timedelta(seconds=900)
    monkeypatch.setenv("PAYMENT_REFUND_STATUS_AFTER_S", "120")
    forget_settings()
    assert refund_status_after() == dt.timedelta(seconds=120)
    monkeypatch.setenv("PAYMENT_REFUND_STATUS_AFTER_S", "5")
    forget_settings()
    with pytest.raises(ValueError, match=r"^PAYMENT_REFUND_STATUS_AFTER_S='5': not a number from 60 to 86400$"):
        refund_status_after()
