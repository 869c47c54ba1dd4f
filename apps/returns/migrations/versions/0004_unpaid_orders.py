"""Returns of orders placed without payment: order_snapshots.paid, return_requests.no_refund_reason.

Two nullable columns without a default: a catalog-only change, no rewrite. A snapshot whose ``paid`` is
null is read again from the order API at its next return (apps/returns/orders.py lock_order).

Revision ID: returns_0004
Revises: returns_0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "returns_0004"
down_revision = "returns_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("order_snapshots", sa.Column("paid", sa.Boolean))
    op.add_column("return_requests", sa.Column("no_refund_reason", sa.String(255)))


def downgrade() -> None:
    op.drop_column("return_requests", "no_refund_reason")
    op.drop_column("order_snapshots", "paid")
