"""Returns in customer_stats: returns_count and refunded_amount (total_spent is net of refunds).

Revision ID: customer_0004
Revises: customer_0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "customer_0004"
down_revision = "customer_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customer_stats", sa.Column("returns_count", sa.Integer, nullable=False, server_default="0"))
    op.add_column("customer_stats", sa.Column("refunded_amount", sa.Numeric(12, 2), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("customer_stats", "refunded_amount")
    op.drop_column("customer_stats", "returns_count")
