"""The ISO 4217 codes with four decimals reach the card provider in their own minor unit (W, session 32).

70bc0a1 completed the zero-decimal table; CLF (Chilean unidad de fomento) and UYW (Uruguayan unidad
previsional) have a minor unit of 10**-4 and fell to the default of two decimals, while the catalog takes
any three capitals: 1.25 CLF is sent as 125, which a provider reading CLF's own exponent charges as 0.0125 CLF,
a hundredth of the price (the dinars' tenth of session 30, two places further). The table knows them now
(pricing.FOUR_DECIMAL, payment_0006): priced in hundredths at most, as a three-decimal code is (STORED_DECIMALS),
sent in ten-thousandths.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.common.pricing import minor_exponent
from apps.payment.rules import from_minor, to_minor

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("currency", ["CLF", "UYW"])
def test_a_four_decimal_currency_is_sent_in_ten_thousandths(currency: str) -> None:
    assert minor_exponent(currency) == 4
    assert to_minor(Decimal("1.25"), currency) == 12500
    assert from_minor(12500, currency) == Decimal("1.25")
