"""customer_stats' money columns hold the sum of every order a customer can have: NUMERIC(20,2).

total_spent and refunded_amount were NUMERIC(12,2) (at most 9,999,999,999.99) while one order's total may
be 99,999,999.99 (orders.total_amount, NUMERIC(10,2)) in any currency: a customer's 101st such order (in
VND or IDR an everyday price) overflowed total_spent, and the customer-stats consumer dead-lettered that
order.created (a value the database refuses is the event's fault, so it is not retried): the order was
never counted. NUMERIC(20,2) holds as many largest orders as orders_count (an integer) can count.

Raising a numeric's precision at the same scale rewrites nothing (PostgreSQL checks the type modifier
only): ACCESS EXCLUSIVE for an instant, bounded by the migration's lock_timeout.

Revision ID: customer_0010
Revises: customer_0009
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "customer_0010"
down_revision = "customer_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE customer_stats ALTER COLUMN total_spent TYPE numeric(20, 2), "
        "ALTER COLUMN refunded_amount TYPE numeric(20, 2)"
    )


def downgrade() -> None:
    # Fails (numeric field overflow) while a row holds more than NUMERIC(12,2) can: nothing is cut.
    op.execute(
        "ALTER TABLE customer_stats ALTER COLUMN total_spent TYPE numeric(12, 2), "
        "ALTER COLUMN refunded_amount TYPE numeric(12, 2)"
    )
