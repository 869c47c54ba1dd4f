"""Contract: drop orders.created_by_service (step 3 of 3).

The code stopped reading and writing created_by_service in the release that brought 0005-0006 (the
model maps source_service only), so the trigger that kept it equal goes, and the column with it. The
archive keeps its created_by_service: archived rows are history, and the column is nullable there.

Revision ID: order_0007
Revises: order_0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from apps.order.migrations.source_service import CREATE_SYNC, DROP_SYNC, copy_column

revision = "order_0007"
down_revision = "order_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in DROP_SYNC:
        op.execute(statement)
    op.drop_column("orders", "created_by_service")


def downgrade() -> None:
    op.add_column("orders", sa.Column("created_by_service", sa.String(50)))
    for statement in CREATE_SYNC:
        op.execute(statement)
    with op.get_context().autocommit_block():
        copy_column("orders", "source_service", "created_by_service")
