"""A known customer's erasure is a tombstone (``erased``), not a deleted row (session 31, X).

order-references applied customer.erased by deleting the customer's row of ``order_known_customers``; the
order API's fallback (the customer API answered 200 just before the erasure) then wrote the row back with
``ON CONFLICT DO NOTHING``, and the erased customer was known again: their later orders kept addresses. The
erasure now sets ``erased`` (inserting the row when the customer was never known here), so that insert finds
the row and writes nothing, and the read models' lookup reads an erased customer as unknown
(apps/order/erasure.py, apps/order/known.py).

The column has a constant default: PostgreSQL 11+ adds it without rewriting the table (a brief ACCESS
EXCLUSIVE lock, no scan). The downgrade deletes the tombstones first: the code before this revision reads a
row as a known customer.

Revision ID: order_0019
Revises: order_0018
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "order_0019"
down_revision = "order_0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE order_known_customers ADD COLUMN IF NOT EXISTS erased boolean NOT NULL DEFAULT false")


def downgrade() -> None:
    op.execute("DELETE FROM order_known_customers WHERE erased")
    op.execute("ALTER TABLE order_known_customers DROP COLUMN IF EXISTS erased")
