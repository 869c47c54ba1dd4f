"""The analytics service's tables: the outbox, the consumer inbox and the sales projections."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import CHAR
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from apps.common.models import ServiceBase


class Base(ServiceBase, bind_key="analytics", inbox=True):
    """Every analytics table lives on this service's own metadata, next to its outbox tables."""


class DailySales(Base):
    """Projection: per UTC day and currency, orders placed, net revenue and cancellations (see projections.py)."""

    __tablename__ = "daily_sales"
    __table_args__ = (sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),)

    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    currency: Mapped[str] = mapped_column(CHAR(3), primary_key=True)
    orders: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    revenue: Mapped[Decimal] = mapped_column(sa.Numeric(20, 2), default=Decimal("0.00"), server_default="0")
    cancellations: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # Returns refunded that day and their amount (apps/analytics/returns.py); revenue stays gross.
    returns: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    refunds: Mapped[Decimal] = mapped_column(sa.Numeric(20, 2), default=Decimal("0.00"), server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class ProductSales(Base):
    """Projection: per product and currency, units sold and line revenue net of cancellations."""

    __tablename__ = "product_sales"
    __table_args__ = (
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        sa.Index("idx_product_sales_top", sa.text("revenue DESC"), sa.text("units DESC"), "product_id"),
    )

    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    currency: Mapped[str] = mapped_column(CHAR(3), primary_key=True)
    units: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    revenue: Mapped[Decimal] = mapped_column(sa.Numeric(20, 2), default=Decimal("0.00"), server_default="0")
    units_returned: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    refunded: Mapped[Decimal] = mapped_column(sa.Numeric(20, 2), default=Decimal("0.00"), server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
