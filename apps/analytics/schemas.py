"""Response bodies of the analytics API.

Money travels as a decimal string ("19.90"). Every row names its currency: amounts of different
currencies are never added up, so a row without its currency would be ambiguous as soon as a second one
appears, and a response shape that changed with the data would break clients.
"""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import msgspec
from msgspec import Meta

if TYPE_CHECKING:
    from apps.analytics.models import DailySales, ProductSales

__all__ = ["DailySalesOut", "ProductSalesOut", "to_daily_sales_out", "to_product_sales_out"]

Money = Annotated[Decimal, Meta(description="decimal string with 2 decimal places", examples=["19.90"])]
Currency = Annotated[str, Meta(description="ISO 4217 code", examples=["USD"])]


class DailySalesOut(msgspec.Struct, kw_only=True):
    """One UTC day in one currency: orders placed, their revenue net of cancellations, refunded returns."""

    day: dt.date
    currency: Currency
    orders: int
    revenue: Annotated[Money, Meta(description="order totals placed that day minus totals cancelled that day")]
    cancellations: int
    returns: Annotated[int, Meta(description="returns refunded that day")]
    refunds: Annotated[Money, Meta(description="amounts refunded that day for returns")]
    net_revenue: Annotated[Money, Meta(description="revenue minus refunds")] = Decimal("0.00")


class ProductSalesOut(msgspec.Struct, kw_only=True):
    """One product in one currency: units and line revenue, net of cancellations."""

    product_id: uuid.UUID
    currency: Currency
    units: int
    revenue: Money
    units_returned: int
    refunded: Money


# The response structs name a subset of the row's columns: each mapper reads those attributes.
def to_daily_sales_out(row: DailySales) -> DailySalesOut:
    out = msgspec.convert(row, DailySalesOut, from_attributes=True)
    out.net_revenue = out.revenue - out.refunds
    return out


def to_product_sales_out(row: ProductSales) -> ProductSalesOut:
    return msgspec.convert(row, ProductSalesOut, from_attributes=True)
