"""Amounts reach the card provider in the currency's own minor unit (S, session 30).

``to_minor`` knew zero-decimal currencies and took every other one as two decimals, while the catalog
accepts any ISO 4217 code for a product: a price in a three-decimal currency (Bahraini dinar: 1,000 fils)
was sent as hundredths, so 10.50 BHD became 1050 minor units, which a provider reads as 1.050 BHD: every
authorization, capture and refund a tenth of the amount."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.payment.rules import from_minor, to_minor

pytestmark = pytest.mark.unit

THREE_DECIMALS = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")


@pytest.mark.parametrize("currency", THREE_DECIMALS)
def test_a_three_decimal_currency_is_sent_in_thousandths(currency: str) -> None:
    assert to_minor(Decimal("10.50"), currency) == 10500
    assert to_minor(Decimal("0.01"), currency.lower()) == 10
    assert from_minor(10500, currency) == Decimal("10.5")


@pytest.mark.parametrize(("currency", "minor"), [("USD", 1050), ("EUR", 1050), ("JPY", 11), ("KRW", 11)])
def test_the_other_currencies_are_unchanged(currency: str, minor: int) -> None:
    assert to_minor(Decimal("10.50"), currency) == minor
