"""Partial indexes for the saga dashboard's counts, in place of a full one (issue 11).

The order sweeper counts sagas waiting on each step, the cancelled orders' sagas by reason and the orders
whose payment the provider refused, every 10 s while orders are written. Each count scanned a whole table
or index (order_sagas by step, orders by status, orders for three payment statuses): ~150-500 ms of a
PostgreSQL backend per round at ~370k orders, growing with the table. Each count now reads only the rows
it counts: the sagas still waiting (a handful), the cancelled orders (a few percent), the refused
payments (dozens). idx_order_sagas_step, whose only reader was the per-step count, becomes the partial
idx_order_sagas_waiting, so a saga's last update (to done) no longer inserts an entry; the two new
partial indexes on orders get an entry only when an order is cancelled or its payment refused. The
finished sagas are counted from the primary key (apps/order/sweeper.py says how often).

Built and dropped CONCURRENTLY, so orders keep being placed meanwhile.

Revision ID: order_0012
Revises: order_0011
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "order_0012"
down_revision = "order_0011"
branch_labels = None
depends_on = None

_FAILED = "payment_status IN ('capture_failed', 'void_failed', 'refund_failed')"


def _build(name: str, table: str, column: str, where: str) -> None:
    op.create_index(
        name, table, [column], postgresql_where=sa.text(where), postgresql_concurrently=True, if_not_exists=True
    )


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _build("idx_order_sagas_waiting", "order_sagas", "step", "step <> 'done'")
        op.drop_index("idx_order_sagas_step", "order_sagas", postgresql_concurrently=True, if_exists=True)
        _build("idx_orders_cancelled", "orders", "id", "status = 'cancelled'")
        _build("idx_orders_payment_failed", "orders", "payment_status", _FAILED)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("idx_orders_payment_failed", "orders", postgresql_concurrently=True, if_exists=True)
        op.drop_index("idx_orders_cancelled", "orders", postgresql_concurrently=True, if_exists=True)
        op.create_index(
            "idx_order_sagas_step", "order_sagas", ["step"], postgresql_concurrently=True, if_not_exists=True
        )
        op.drop_index("idx_order_sagas_waiting", "order_sagas", postgresql_concurrently=True, if_exists=True)
