"""An index on idempotency_keys.order_id, the foreign key to orders.

Deleting an order (the archive job moves orders older than the hot window to orders_archive) makes
PostgreSQL check that no idempotency key still points at it; without an index on the referencing column
each check scanned the whole table: 22,547 sequential scans reading 455 million rows on the local stack
(helper P, pg_stat_user_tables). Built CONCURRENTLY, so orders keep being placed while it builds.

Revision ID: order_0011
Revises: order_0010
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "order_0011"
down_revision = "order_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "idx_idempotency_keys_order",
            "idempotency_keys",
            ["order_id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("idx_idempotency_keys_order", "idempotency_keys", postgresql_concurrently=True, if_exists=True)
