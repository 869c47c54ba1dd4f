"""Idempotency-Keys scoped to the order's customer, step 1 of 2 (expand).

Keys shared one namespace across customers: a customer's key was refused (409) because another customer
had used it, and the 409 told them so. The key becomes the customer's own, as a card processor scopes it to
an account: primary key (customer_id, key) in order_0018. Here, with nothing refused yet:

- ``customer_id`` is added nullable, without a default (the catalog only, a brief lock). The code of this
  release writes it and looks keys up by (customer_id, key); the release before writes NULL and looks up
  by key alone, which the key-only primary key still serves.
- the unique index (customer_id, key) is built CONCURRENTLY: the lookups' index, and order_0018's primary
  key. NULLs never conflict, so rows of the release before pass it.

Rows without a customer (written before, or by the release before while both run) are filled in by
order_0018, once no code writes them any more. Until then this release finds such a row only when its
insert loses to it on the key-only primary key, and answers from it (apps/order/services.py ``_WINNER``):
the row's fingerprint covers the body's customer_id, so only that customer's retry can match it.

Revision ID: order_0017
Revises: order_0016
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "order_0017"
down_revision = "order_0016"
branch_labels = None
depends_on = None

SCOPED = "uq_idempotency_keys_customer_key"
_INVALID = "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(:name) AND NOT indisvalid"


def upgrade() -> None:
    # Each step may have been done by a run that failed after it (the column is committed before the
    # build; a build that ran out of lock_timeout leaves its index INVALID, which IF NOT EXISTS would keep).
    op.add_column("idempotency_keys", sa.Column("customer_id", sa.String(36), nullable=True), if_not_exists=True)
    with op.get_context().autocommit_block():
        if not context.is_offline_mode() and op.get_bind().execute(sa.text(_INVALID), {"name": SCOPED}).first():
            op.drop_index(SCOPED, "idempotency_keys", postgresql_concurrently=True)
        op.create_index(
            SCOPED,
            "idempotency_keys",
            ["customer_id", "key"],
            unique=True,
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(SCOPED, "idempotency_keys", postgresql_concurrently=True, if_exists=True)
    op.drop_column("idempotency_keys", "customer_id")
