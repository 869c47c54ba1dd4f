"""Idempotency-Keys scoped to the order's customer, step 2 of 2 (contract): primary key (customer_id, key).

Runs once no code of the release before order_0017 writes keys (that code writes no customer_id, and a row
without one would break the new primary key):

- rows without a customer (written before order_0017, or by the release before while both ran) get their
  order's, in batches of 1,000, each its own transaction (rows held right now are skipped and taken by a
  later batch);
- NOT NULL the safe way: CHECK (customer_id IS NOT NULL) added NOT VALID (a brief lock, no scan), then
  VALIDATE (a scan that blocks neither reads nor writes);
- one ALTER TABLE drops the key-only primary key and makes order_0017's unique index (customer_id, key) the
  primary key (a brief ACCESS EXCLUSIVE: PostgreSQL 15 takes the valid CHECK as proof of NOT NULL and does
  not scan; the index exists already); the CHECK, now implied by the primary key, goes.

From here another customer's use of a key is invisible: both orders are placed.

The downgrade cannot keep two customers' rows under one key: it keeps the earliest row of each key and
deletes the others (their customers' retries are then refused with a 409, as every reused key was before
order_0017; none places a second order), builds the unique index on key CONCURRENTLY and makes it the
primary key again, keeps order_0017's (customer_id, key) index and lets customer_id be NULL again. A
duplicate written between its clean-up and its index build fails the build: run it again (it starts by
dropping an index such a failure leaves behind).

Revision ID: order_0018
Revises: order_0017
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from outbox.migrations import fill_in_batches

revision = "order_0018"
down_revision = "order_0017"
branch_labels = None
depends_on = None

SCOPED = "uq_idempotency_keys_customer_key"
KEY_ONLY = "uq_idempotency_keys_key"
PRIMARY = "pk_idempotency_keys"
CHECK = "ck_idempotency_keys_customer_id_not_null"
BATCH = 1000

# The key-only primary key still holds while this runs, so a key names one row.
FILL = (
    "UPDATE idempotency_keys k SET customer_id = o.customer_id FROM orders o WHERE o.id = k.order_id AND k.key IN "
    f"(SELECT key FROM idempotency_keys WHERE customer_id IS NULL LIMIT {BATCH} FOR UPDATE SKIP LOCKED) "
    "RETURNING k.key"
)
LEFT = "SELECT 1 FROM idempotency_keys WHERE customer_id IS NULL LIMIT 1"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        fill_in_batches(FILL, LEFT)  # each key's customer from its order
        # A run that failed after adding it (the swap below ran out of lock_timeout) left it behind.
        op.execute(f"ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS {CHECK}")
        op.execute(f"ALTER TABLE idempotency_keys ADD CONSTRAINT {CHECK} CHECK (customer_id IS NOT NULL) NOT VALID")
        op.execute(f"ALTER TABLE idempotency_keys VALIDATE CONSTRAINT {CHECK}")
    op.execute(
        f"ALTER TABLE idempotency_keys DROP CONSTRAINT {PRIMARY}, "
        f"ADD CONSTRAINT {PRIMARY} PRIMARY KEY USING INDEX {SCOPED}"
    )
    op.execute(f"ALTER TABLE idempotency_keys DROP CONSTRAINT {CHECK}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {KEY_ONLY}")
        op.execute(
            "DELETE FROM idempotency_keys k USING idempotency_keys e WHERE e.key = k.key "
            "AND (e.created_at, e.customer_id) < (k.created_at, k.customer_id)"
        )
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {KEY_ONLY} ON idempotency_keys (key)")
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {SCOPED} ON idempotency_keys (customer_id, key)")
    op.execute(
        f"ALTER TABLE idempotency_keys DROP CONSTRAINT {PRIMARY}, "
        f"ADD CONSTRAINT {PRIMARY} PRIMARY KEY USING INDEX {KEY_ONLY}"
    )
    op.execute("ALTER TABLE idempotency_keys ALTER COLUMN customer_id DROP NOT NULL")
