"""Catalog prices and priced lines, as every service that sells (order, checkout) reads and keeps them, and
each currency's precision: how many decimals its amounts may have here and at the card provider.

No I/O here: apps/common/dependencies.py asks the catalog, the services' rules decide with these.
"""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import functools
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

import msgspec

from apps.common.errors import InconsistentFields

__all__ = [
    "CENT",
    "ZERO",
    "CatalogPrice",
    "PricedLine",
    "Quote",
    "check_places",
    "decimals",
    "minor_exponent",
    "minor_units",
    "price_line",
    "quantum",
    "round_money",
]

CENT: Final = Decimal("0.01")
# The most products one order takes (POST /api/orders' items), and so one cart: the checkout prices a cart
# with one catalog call and its order is placed with these lines.
MAX_LINES: Final = 100
# Every amount column of an order, a cart line and a checkout is NUMERIC(10,2): a line total, subtotal or
# total beyond this is refused (422 naming the field) instead of overflowing in the database.
MAX_AMOUNT: Final = Decimal("99999999.99")
ZERO: Final = Decimal("0.00")
# ISO 4217 currencies without a minor unit (all seventeen: a guarani taken as hundredths was charged a hundred
# times, S, session 32), and those of a thousandth; every other code (the catalog takes any three capitals) has
# two decimals. A dinar taken as hundredths was charged a tenth (S, session 30).
ZERO_DECIMAL: Final = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF"}
    | {"XPF"}
)
THREE_DECIMAL: Final = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
# The two units of account of a ten-thousandth (Chile's unidad de fomento, Uruguay's unidad previsional): taken
# as hundredths, 1.25 CLF reached the provider as 125, a hundredth of the price (W, session 32).
FOUR_DECIMAL: Final = frozenset({"CLF", "UYW"})
# Every amount column (catalog price, order and cart lines and totals, payments, returns) holds two decimals:
# a three- or four-decimal currency is priced and charged in hundredths of its unit at most (10.25 KWD is 10250
# fils, 1.25 CLF is 12500 ten-thousandths).
STORED_DECIMALS: Final = 2


def minor_exponent(currency: str) -> int:
    """The card provider's minor unit of ``currency``: amounts cross to it as integers of 10**-exponent."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    return 3 if code in THREE_DECIMAL else 4 if code in FOUR_DECIMAL else 2


def decimals(currency: str) -> int:
    """How many decimals an amount in ``currency`` may have here: its minor unit's, at most what a column holds."""
    return min(minor_exponent(currency), STORED_DECIMALS)


@functools.lru_cache(maxsize=256)  # read for every order line: a dict lookup, not a Decimal built each time
def quantum(currency: str) -> Decimal:
    """The smallest amount of ``currency`` here: 1 for JPY, 0.01 for USD and for KWD."""
    return Decimal(1).scaleb(-decimals(currency))


def round_money(amount: Decimal, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """A computed amount (a tax, a share of one) at ``currency``'s precision, always shown with two decimals
    as every amount column stores it (1000 JPY x 7.25 % is 73.00 half-up, never 72.50)."""
    return amount.quantize(quantum(currency), rounding=rounding).quantize(CENT)


def check_places(field: str, amount: Decimal, currency: str) -> Decimal:
    """``amount`` unless it has more decimals than ``currency`` has here (100.50 JPY, 12.345 EUR): a 422
    naming ``field``. Each is valid alone and they contradict each other; rounding would charge, or refund, an
    amount nobody asked for (100.50 JPY reached the provider as 101)."""
    if amount.is_finite() and amount != amount.quantize(quantum(currency), rounding=ROUND_HALF_UP):
        places = decimals(currency)
        has = "no decimals" if places == 0 else f"at most {places} decimals"
        raise InconsistentFields(field, f"{amount} has more decimals than {currency.upper()} amounts have ({has})")
    return amount


def minor_units(amount: Decimal, exponent: int) -> int:
    """``amount`` in integer units of 10**-exponent (12.34 at 2: 1234), as the card provider takes it. Half up
    when it does not divide, as every release sent it: only an amount check_places would refuse rounds."""
    return int(amount.scaleb(exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class CatalogPrice:
    """What the catalog says about a product that may be sold."""

    product_id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str


class PricedLine(msgspec.Struct, frozen=True):
    """A quantity of one product at its catalog price, to the cent. Response and event structs that show
    a line derive from it, so a line has the same fields wherever it appears."""

    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    total_price: Decimal


def price_line(product: CatalogPrice, quantity: int, *, field: str) -> PricedLine:
    """``quantity`` units at the catalog's price; the total is exact. A price with more decimals than its
    currency has (a 100.50 JPY product priced before the catalog refused it) is not for sale: a 422 naming
    ``field``, the request's field that named the product, until staff correct the price. Never rounded:
    the order would charge a price the catalog does not show."""
    smallest = quantum(product.currency)
    # A catalog price has two decimals at most (NUMERIC(10, 2)): only a currency with fewer needs a look.
    if smallest != CENT and product.price != product.price.quantize(smallest, rounding=ROUND_HALF_UP):
        raise InconsistentFields(
            field,
            f"product {product.product_id} is priced {product.price} {product.currency}, more decimals than "
            f"{product.currency} amounts have: not for sale until its price is corrected",
        )
    unit = product.price.quantize(CENT)
    return PricedLine(product.product_id, product.sku, product.name, quantity, unit, (unit * quantity).quantize(CENT))


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """What an order costs: its priced lines, the goods' subtotal, and what is added or taken off."""

    currency: str
    lines: tuple[PricedLine, ...]
    subtotal: Decimal
    tax_amount: Decimal = ZERO
    shipping_amount: Decimal = ZERO
    discount_amount: Decimal = ZERO

    @property
    def total_amount(self) -> Decimal:
        return self.subtotal - self.discount_amount + self.tax_amount + self.shipping_amount
