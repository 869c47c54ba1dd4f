"""Archive tables for orders older than two years, with everything that references them.

infra/archive.py moves the rows in batches (the ``order-archive`` job of infra/jobs.py, hourly); the
order service's GET /api/orders/{id} reads an order it no longer has from here (apps/order/archive.py).
Each archive has its table's columns, defaults, CHECKs and indexes, and no foreign keys (LIKE copies
none): an archived item's order is archived with it, and nothing references the archive.

Revision ID: order_0004
Revises: order_0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "order_0004"
down_revision = "order_0003"
branch_labels = None
depends_on = None

ARCHIVED = ("orders", "order_items", "order_status_history", "order_sagas")


def upgrade() -> None:
    for table in ARCHIVED:
        op.execute(f"CREATE TABLE {table}_archive (LIKE {table} INCLUDING ALL)")


def downgrade() -> None:
    for table in reversed(ARCHIVED):
        op.execute(f"DROP TABLE {table}_archive")
