"""Fewer index entries per order (issue 11): event_store's created_at as BRIN, the saga's checkout_id
unique only where it is set.

- event_store: see outbox.migrations.event_store_created_brin (append-only in time; only range
  conditions read created_at). Two events per order each took an entry in the btree.
- order_sagas.checkout_id: an order placed through POST /api/orders has none, yet every saga row put a
  NULL entry into uq_order_sagas_checkout_id twice (its insert, and its confirmation: step and
  deadline_at are indexed, so that update is never HOT). NULLs never conflict in a unique index, so a
  partial one (uq_order_sagas_checkout_id_set, WHERE checkout_id IS NOT NULL) enforces exactly the same
  rule, and is built (CONCURRENTLY) before the constraint goes. Nothing looks sagas up by checkout_id (the
  checkout's order id is the saga's key).

The downgrade restores the constraint.

Revision ID: order_0014
Revises: order_0013
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from outbox.migrations import event_store_created_brin, event_store_created_btree

revision = "order_0014"
down_revision = "order_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_created_brin()
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_order_sagas_checkout_id_set ON order_sagas "
            "(checkout_id) WHERE checkout_id IS NOT NULL"
        )
    op.execute("ALTER TABLE order_sagas DROP CONSTRAINT IF EXISTS uq_order_sagas_checkout_id")


def downgrade() -> None:
    # The constraint's index is built CONCURRENTLY first, so the constraint takes it over at once.
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_order_sagas_checkout_id ON order_sagas (checkout_id)"
        )
    op.execute(
        "ALTER TABLE order_sagas ADD CONSTRAINT uq_order_sagas_checkout_id UNIQUE USING INDEX uq_order_sagas_checkout_id"
    )
    op.execute("DROP INDEX IF EXISTS uq_order_sagas_checkout_id_set")
    event_store_created_btree()
