"""HTTP routes of analytics: decode the query, call one SalesService method, return schemas."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from typing import Annotated, TypeAlias

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIFormat
from litestar.params import FromPath, QueryParameter

from apps.analytics.rules import CURRENCY_PATTERN, DEFAULT_WINDOW_DAYS, MAX_WINDOW_DAYS
from apps.analytics.schemas import DailySalesOut, ProductSalesOut, to_daily_sales_out, to_product_sales_out
from apps.analytics.services import SalesService
from apps.common.auth import allow
from apps.common.read_routing import replica_reads

__all__ = ["SalesController"]

# The request's SalesService, injected by parameter name.
Sales: TypeAlias = NamedDependency[SalesService]

# Sales reports are the back office's.
BACK_OFFICE = allow("staff")
DEFAULT_TOP = 10
MAX_TOP = 100

CurrencyFilter = Annotated[
    str | None,
    QueryParameter(pattern=CURRENCY_PATTERN, description="only rows in this ISO 4217 currency, e.g. USD"),
]


class SalesController(Controller):
    """Sales reports read from the projections that the analytics consumer group maintains."""

    path = "/api/analytics"
    tags = ["analytics"]
    # Reports: every endpoint may read from the replica (apps/common/read_routing.py says when it does).
    dependencies = {"sales": replica_reads(SalesService)}

    @get("/sales/daily", guards=[BACK_OFFICE])
    async def daily_sales(
        self,
        sales: Sales,
        # Strings parsed by the service's rules, so that a bad value is reported as `from`, not `from_`.
        from_: Annotated[
            str | None,
            QueryParameter(
                name="from",
                format=OpenAPIFormat.DATE,
                description=f"first day, YYYY-MM-DD (default: {DEFAULT_WINDOW_DAYS - 1} days before `to`)",
            ),
        ] = None,
        to: Annotated[
            str | None,
            QueryParameter(
                format=OpenAPIFormat.DATE,
                description=(
                    f"last day, inclusive (default: today, UTC); a longer range than {MAX_WINDOW_DAYS} days is cut "
                    "to its first days, one after its end is empty"
                ),
            ),
        ] = None,
        currency: CurrencyFilter = None,
    ) -> list[DailySalesOut]:
        """Per UTC day and currency: orders, net revenue, cancellations; only days with activity, oldest first."""
        return [to_daily_sales_out(row) for row in await sales.daily(from_, to, currency=currency)]

    @get("/products/top", guards=[BACK_OFFICE])
    async def top_products(
        self,
        sales: Sales,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_TOP)] = DEFAULT_TOP,
        currency: CurrencyFilter = None,
    ) -> list[ProductSalesOut]:
        """Best-selling products by net revenue, then units; pass ``currency`` to rank within one currency."""
        return [to_product_sales_out(row) for row in await sales.top_products(limit=limit, currency=currency)]

    @get("/products/{product_id:uuid}", guards=[BACK_OFFICE])
    async def product_sales(self, sales: Sales, product_id: FromPath[uuid.UUID]) -> list[ProductSalesOut]:
        """One product's net units and revenue, a row per currency; empty if it never sold."""
        return [to_product_sales_out(row) for row in await sales.product(product_id)]
