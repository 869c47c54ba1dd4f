"""Expand: orders.source_service beside created_by_service (step 1 of 3 of a zero-downtime rename).

The seed's recipe (docs/operations.md, "Migrations without downtime") on a real column: which service
created the order, created_by_service until now, source_service from now on.

- the new column is added nullable: no rewrite, no scan;
- the old one loses its NOT NULL and its default (catalog changes), so code that no longer writes it
  can insert, and no default fills it before the trigger copies the new one;
- a trigger keeps both equal on every write, so the release before this one (writing only
  created_by_service) and this one (writing only source_service) both leave both filled;
- the archive gets the column too (infra/archive.py copies every live column).

Revision ID: order_0005
Revises: order_0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from apps.order.migrations.source_service import CREATE_SYNC, DROP_SYNC, copy_column

revision = "order_0005"
down_revision = "order_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("orders", "orders_archive"):
        op.add_column(table, sa.Column("source_service", sa.String(50)))
        # No default either: a default would fill the column before the trigger could copy the other one.
        op.alter_column(table, "created_by_service", nullable=True, server_default=None, existing_type=sa.String(50))
    for statement in CREATE_SYNC:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_SYNC:
        op.execute(statement)
    with op.get_context().autocommit_block():
        for table in ("orders", "orders_archive"):
            copy_column(table, "source_service", "created_by_service")
    for table in ("orders", "orders_archive"):
        op.alter_column(
            table, "created_by_service", nullable=False, server_default="order-service", existing_type=sa.String(50)
        )
        op.drop_column(table, "source_service")
