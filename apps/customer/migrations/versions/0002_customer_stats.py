"""customer_stats projection and the consumer inbox.

Revision ID: customer_0002
Revises: customer_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from outbox.migrations import create_inbox_v1, drop_inbox_v1

revision = "customer_0002"
down_revision = "customer_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_inbox_v1()
    op.create_table(
        "customer_stats",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("orders_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancelled_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_spent", sa.Numeric(12, 2), nullable=False, server_default="0"),
        sa.Column("last_order_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("customer_stats")
    drop_inbox_v1()
