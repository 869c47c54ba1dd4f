"""Only the indexes a query reads on the order write path's tables, and room for HOT updates (issue 11).

Every order is inserted into orders, then updated once by its confirmation (status, updated_at); every
line is inserted into order_items, then updated once by its reservation (reservation_id, warehouse_id).
An UPDATE that changes an indexed column (or a column of a partial index's predicate) inserts a new entry
into every index of the table; one that changes none, with room on the row's page, is a HOT update: no
index entry at all. The confirmation inserted into all 8 of orders' indexes, each line's reservation
into all 4 of order_items'. No query of this service reads these five of the seed's indexes:

- idx_orders_customer (customer_id): a prefix of idx_orders_customer_created, which a customer's order
  list reads; the erasure's UPDATE by customer_id uses that one as well.
- idx_orders_status, idx_orders_customer_status, idx_orders_complex_search: nothing filters orders by
  status but the sweeper's count of cancelled orders. It now finds them through idx_orders_cancelled_at
  (every cancellation sets cancelled_at) and reads their status from the row, so no index covers status
  or updated_at and the confirmation can be a HOT update.
- idx_order_items_product, idx_order_items_product_warehouse: lines are read by order_id only (the
  saga, the order's view, the archive job); warehouse_id made each line's reservation non-HOT.

fillfactor leaves room on each new page for the one update every row gets soon after its insert (orders
~25 rows a page, order_items ~48); pages written before keep theirs until rewritten.

Dropped and built CONCURRENTLY; the downgrade builds the seed's indexes again.

Revision ID: order_0013
Revises: order_0012
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "order_0013"
down_revision = "order_0012"
branch_labels = None
depends_on = None

_DROPPED: tuple[tuple[str, str, list[str | sa.TextClause], str | None], ...] = (
    ("idx_orders_customer", "orders", ["customer_id"], None),
    ("idx_orders_status", "orders", ["status"], None),
    ("idx_orders_customer_status", "orders", ["customer_id", "status"], None),
    (
        "idx_orders_complex_search",
        "orders",
        ["customer_id", "status", sa.text("created_at DESC")],
        "status IN ('confirmed', 'processing', 'shipped')",
    ),
    ("idx_order_items_product", "order_items", ["product_id"], None),
    ("idx_order_items_product_warehouse", "order_items", ["product_id", "warehouse_id"], None),
)
_FILLFACTOR = {"orders": 85, "order_items": 90}


def _build(name: str, table: str, columns: list[str | sa.TextClause], where: str | None) -> None:
    op.create_index(
        name,
        table,
        columns,
        postgresql_where=sa.text(where) if where else None,
        postgresql_concurrently=True,
        if_not_exists=True,
    )


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _build("idx_orders_cancelled_at", "orders", ["id"], "cancelled_at IS NOT NULL")
        op.drop_index("idx_orders_cancelled", "orders", postgresql_concurrently=True, if_exists=True)
        for name, table, _, _ in _DROPPED:
            op.drop_index(name, table, postgresql_concurrently=True, if_exists=True)
    for table, fillfactor in _FILLFACTOR.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")


def downgrade() -> None:
    for table in _FILLFACTOR:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    with op.get_context().autocommit_block():
        for name, table, columns, where in _DROPPED:
            _build(name, table, columns, where)
        _build("idx_orders_cancelled", "orders", ["id"], "status = 'cancelled'")
        op.drop_index("idx_orders_cancelled_at", "orders", postgresql_concurrently=True, if_exists=True)
