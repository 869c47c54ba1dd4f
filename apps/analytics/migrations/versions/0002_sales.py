"""Sales projections (daily_sales, product_sales) and the consumer inbox of the analytics group.

Revision ID: analytics_0002
Revises: analytics_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from outbox.migrations import create_inbox_v1, drop_inbox_v1

revision = "analytics_0002"
down_revision = "analytics_0001"
branch_labels = None
depends_on = None


def _updated_at() -> sa.Column[Any]:
    return sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    create_inbox_v1()
    # Counts and sums may go below zero on purpose (a cancellation whose order was placed before the
    # replay window), so there are no sign checks; the currency format is checked by the consumer first.
    op.create_table(
        "daily_sales",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("currency", pg.CHAR(3), nullable=False),
        sa.Column("orders", sa.Integer, nullable=False, server_default="0"),
        sa.Column("revenue", sa.Numeric(14, 2), nullable=False, server_default="0"),
        sa.Column("cancellations", sa.Integer, nullable=False, server_default="0"),
        _updated_at(),
        sa.PrimaryKeyConstraint("day", "currency", name="pk_daily_sales"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_daily_sales_currency_iso")),
    )
    op.create_table(
        "product_sales",
        sa.Column("product_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("currency", pg.CHAR(3), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("revenue", sa.Numeric(14, 2), nullable=False, server_default="0"),
        _updated_at(),
        sa.PrimaryKeyConstraint("product_id", "currency", name="pk_product_sales"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_product_sales_currency_iso")),
    )
    # GET /api/analytics/products/top reads the first rows of this order instead of sorting the table.
    op.create_index(
        "idx_product_sales_top", "product_sales", [sa.text("revenue DESC"), sa.text("units DESC"), "product_id"]
    )


def downgrade() -> None:
    op.drop_table("product_sales")
    op.drop_table("daily_sales")
    drop_inbox_v1()
