"""Catalog prices and priced lines, as every service that sells (order, checkout) reads and keeps them.

No I/O here: apps/common/dependencies.py asks the catalog, the services' rules decide with these.
"""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import msgspec

__all__ = ["CENT", "ZERO", "CatalogPrice", "PricedLine", "Quote", "price_line"]

CENT: Final = Decimal("0.01")
# The most products one order takes (POST /api/orders' items), and so one cart: the checkout prices a cart
# with one catalog call and its order is placed with these lines.
MAX_LINES: Final = 100
# Every amount column of an order, a cart line and a checkout is NUMERIC(10,2): a line total, subtotal or
# total beyond this is refused (422 naming the field) instead of overflowing in the database.
MAX_AMOUNT: Final = Decimal("99999999.99")
ZERO: Final = Decimal("0.00")


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


def price_line(product: CatalogPrice, quantity: int) -> PricedLine:
    """``quantity`` units at the catalog's price rounded to the cent; the total is exact."""
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
