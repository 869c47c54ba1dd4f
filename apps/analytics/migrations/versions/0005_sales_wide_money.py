"""The sales projections' money columns hold what their counts can count: NUMERIC(20,2).

daily_sales.revenue/refunds and product_sales.revenue/refunded were NUMERIC(14,2) (at most
999,999,999,999.99) while one order may total 99,999,999.99 (orders.total_amount) in any currency: a
product's 10,001st such order over its life, or a day's in one currency (in VND or IDR a shop's ordinary
volume), overflowed, and the analytics consumer dead-lettered that order event (a value the database
refuses is the event's fault, so it is not retried): the sale was never counted. NUMERIC(20,2) holds as
many largest orders as the integer counts beside it can count.

Raising a numeric's precision at the same scale rewrites neither the tables nor idx_product_sales_top
(PostgreSQL checks the type modifier only and keeps a compatible index): ACCESS EXCLUSIVE for an instant,
bounded by the migration's lock_timeout.

Revision ID: analytics_0005
Revises: analytics_0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "analytics_0005"
down_revision = "analytics_0004"
branch_labels = None
depends_on = None

COLUMNS = {"daily_sales": ("revenue", "refunds"), "product_sales": ("revenue", "refunded")}


def _retype(precision: int) -> None:
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} TYPE numeric({precision}, 2)" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _retype(20)


def downgrade() -> None:
    # Fails (numeric field overflow) while a row holds more than NUMERIC(14,2) can: nothing is cut.
    _retype(14)
