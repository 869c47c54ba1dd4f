"""Backfill and constrain orders.source_service (step 2 of 3).

Rows written before the expand get source_service in batches of 1,000, each its own transaction (rows a
request holds are skipped and taken later). Then NOT NULL the safe way: a CHECK added NOT VALID (a brief
lock, no scan), then VALIDATE in its own transaction (a scan under SHARE UPDATE EXCLUSIVE, which blocks
neither reads nor writes). The CHECK is the guarantee; the column stays nullable in the catalog, because
SET NOT NULL would take ACCESS EXCLUSIVE (PostgreSQL 15 would skip its scan thanks to the valid CHECK,
but gains nothing from it here).

Revision ID: order_0006
Revises: order_0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from apps.order.migrations.source_service import copy_column

revision = "order_0006"
down_revision = "order_0005"
branch_labels = None
depends_on = None

CHECK = "ck_orders_source_service_not_null"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for table in ("orders", "orders_archive"):
            copy_column(table, "created_by_service", "source_service")
        op.execute(f"ALTER TABLE orders ADD CONSTRAINT {CHECK} CHECK (source_service IS NOT NULL) NOT VALID")
        op.execute(f"ALTER TABLE orders VALIDATE CONSTRAINT {CHECK}")


def downgrade() -> None:
    op.execute(f"ALTER TABLE orders DROP CONSTRAINT {CHECK}")
