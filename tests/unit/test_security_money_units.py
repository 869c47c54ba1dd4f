"""Amounts reach the card provider in the currency's own minor unit (S, session 30).

``to_minor`` knew zero-decimal currencies and took every other one as two decimals, while the catalog
accepts any ISO 4217 code for a product: a price in a three-decimal currency (Bahraini dinar: 1,000 fils)
was sent as hundredths, so 10.50 BHD became 1050 minor units, which a provider reads as 1.050 BHD: every
authorization, capture and refund a tenth of the amount."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.common.errors import InconsistentFields
from apps.common.pricing import check_places, minor_exponent
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


# Every ISO 4217 currency without a minor unit (exponent 0). The table knew eight of them, so a price in
# Paraguayan guarani or CFP francs was sent in hundredths (S, session 32): 50,000 PYG as 5,000,000, which a
# provider charges as five million guarani, a hundred times the price; and 100.50 of them was a price the
# catalog took.
ZERO_DECIMALS: tuple[str, ...] = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI")
ZERO_DECIMALS += ("VND", "VUV", "XAF", "XOF", "XPF")


@pytest.mark.parametrize("currency", ZERO_DECIMALS)
def test_a_currency_without_minor_unit_is_sent_in_whole_units(currency: str) -> None:
    assert (minor_exponent(currency), minor_exponent(currency.lower())) == (0, 0)
    assert to_minor(Decimal("50000"), currency) == 50000
    assert from_minor(50000, currency) == Decimal("50000")
    with pytest.raises(InconsistentFields):
        check_places("price", Decimal("100.50"), currency)
