"""Returns in the sales projections: daily_sales.returns / refunds, product_sales.units_returned / refunded.

Revision ID: analytics_0003
Revises: analytics_0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "analytics_0003"
down_revision = "analytics_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("daily_sales", sa.Column("returns", sa.Integer, nullable=False, server_default="0"))
    op.add_column("daily_sales", sa.Column("refunds", sa.Numeric(14, 2), nullable=False, server_default="0"))
    op.add_column("product_sales", sa.Column("units_returned", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("product_sales", sa.Column("refunded", sa.Numeric(14, 2), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("product_sales", "refunded")
    op.drop_column("product_sales", "units_returned")
    op.drop_column("daily_sales", "refunds")
    op.drop_column("daily_sales", "returns")
