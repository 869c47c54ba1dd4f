"""SalesService: adds folded order events to the sales projections, and reads them for the reports.

The consumer's batch handler calls ``apply`` inside the runtime's transaction (which owns the commit);
the HTTP reports only read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from sqlalchemy import select, text

from apps.analytics.models import DailySales, ProductSales
from apps.analytics.rules import report_window

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.analytics.rules import SalesDelta

__all__ = ["SalesService", "utc_today"]

# One set-based upsert per table and batch; the arithmetic happened in rules.fold. Keys arrive sorted,
# so two batches touching the same rows lock them in the same order and never deadlock.
_ADD_DAYS: Final = text(
    """
    INSERT INTO daily_sales AS s (day, currency, orders, revenue, cancellations)
    SELECT * FROM unnest(CAST(:days AS date[]), CAST(:currencies AS varchar[]), CAST(:orders AS int[]),
                         CAST(:revenue AS numeric[]), CAST(:cancellations AS int[]))
    ON CONFLICT (day, currency) DO UPDATE SET
        orders = s.orders + excluded.orders,
        revenue = s.revenue + excluded.revenue,
        cancellations = s.cancellations + excluded.cancellations,
        updated_at = now()
    """
)
_ADD_PRODUCTS: Final = text(
    """
    INSERT INTO product_sales AS s (product_id, currency, units, revenue)
    SELECT * FROM unnest(CAST(:products AS uuid[]), CAST(:currencies AS varchar[]), CAST(:units AS bigint[]),
                         CAST(:revenue AS numeric[]))
    ON CONFLICT (product_id, currency) DO UPDATE SET
        units = s.units + excluded.units,
        revenue = s.revenue + excluded.revenue,
        updated_at = now()
    """
)


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class SalesService:
    """The daily and per-product sales projections."""

    def __init__(self, session: AsyncSession, *, today: Callable[[], dt.date] = utc_today) -> None:
        self.session = session
        self.today = today

    async def apply(self, delta: SalesDelta) -> None:
        """Add a batch's deltas to both projections; the caller's transaction commits."""
        days = sorted(delta.days)
        if days:
            await self.session.execute(
                _ADD_DAYS,
                {
                    "days": [day for day, _ in days],
                    "currencies": [currency for _, currency in days],
                    "orders": [delta.days[k].orders for k in days],
                    "revenue": [delta.days[k].revenue for k in days],
                    "cancellations": [delta.days[k].cancellations for k in days],
                },
            )
        products = sorted(delta.products)
        if products:
            await self.session.execute(
                _ADD_PRODUCTS,
                {
                    "products": [product_id for product_id, _ in products],
                    "currencies": [currency for _, currency in products],
                    "units": [delta.products[k].units for k in products],
                    "revenue": [delta.products[k].revenue for k in products],
                },
            )

    async def daily(self, first: str | None, last: str | None, *, currency: str | None = None) -> Sequence[DailySales]:
        """Rows from ``first`` to ``last`` inclusive (raw query values; default: the last 30 days), by day.

        Only days with activity have a row; a client draws the missing days as zero.
        """
        start, end = report_window(first, last, today=self.today())
        statement = select(DailySales).where(DailySales.day.between(start, end))
        if currency is not None:
            statement = statement.where(DailySales.currency == currency)
        return (await self.session.scalars(statement.order_by(DailySales.day, DailySales.currency))).all()

    async def product(self, product_id: uuid.UUID) -> Sequence[ProductSales]:
        """One product's units and revenue, a row per currency it sold in (none if it never sold)."""
        statement = select(ProductSales).where(ProductSales.product_id == product_id).order_by(ProductSales.currency)
        return (await self.session.scalars(statement)).all()

    async def top_products(self, *, limit: int, currency: str | None = None) -> Sequence[ProductSales]:
        """The best-selling products by revenue, then units (product id breaks the last ties)."""
        statement = select(ProductSales)
        if currency is not None:
            statement = statement.where(ProductSales.currency == currency)
        statement = statement.order_by(
            ProductSales.revenue.desc(), ProductSales.units.desc(), ProductSales.product_id
        ).limit(limit)
        return (await self.session.scalars(statement)).all()
