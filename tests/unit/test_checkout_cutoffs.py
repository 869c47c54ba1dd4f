"""The lifecycle's cutoffs: the seed's numbers from one 'now' and the configured idle time."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.checkout.lifecycle import cutoffs
from apps.checkout.settings import CheckoutSettings

NOW = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)


def test_the_seeds_retention_numbers() -> None:
    at = cutoffs(NOW, CheckoutSettings())
    assert at.abandon_changed_before == NOW - dt.timedelta(days=7)
    assert at.delete_abandoned_before == NOW - dt.timedelta(days=30)
    assert at.delete_expired_before == NOW - dt.timedelta(days=7)


def test_the_idle_time_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKOUT_CART_IDLE_HOURS", "2")
    at = cutoffs(NOW, CheckoutSettings.from_env())
    assert at.abandon_changed_before == NOW - dt.timedelta(hours=2)
