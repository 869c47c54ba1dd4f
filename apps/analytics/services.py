"""SalesService: reads the sales projections for the reports (the analytics consumer group writes them)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

from apps.analytics.models import DailySales, ProductSales
from apps.analytics.rules import report_window

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SalesService", "utc_today"]


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class SalesService:
    """The daily and per-product sales reports."""

    def __init__(self, session: AsyncSession, *, today: Callable[[], dt.date] = utc_today) -> None:
        self.session = session
        self.today = today

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
