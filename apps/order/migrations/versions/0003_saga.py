"""The order saga: its state table, the pending status, and the inbox of the order-saga consumer group.

Revision ID: order_0003
Revises: order_0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from outbox.migrations import create_inbox_v1, drop_inbox_v1

revision = "order_0003"
down_revision = "order_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Orders are born pending now; the saga confirms or cancels them.
    op.alter_column("orders", "status", server_default="pending")
    op.create_table(
        "order_sagas",
        sa.Column("order_id", pg.UUID(as_uuid=True), sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("checkout_id", pg.UUID(as_uuid=True), unique=True),
        sa.Column("step", sa.String(20), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text),
        sa.Column("payment_method_type", sa.String(50)),
        sa.Column("payment_token", sa.String(255)),
        sa.Column("payment_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("payment_requested_at", sa.DateTime(timezone=True)),
        sa.Column("payment_cancel_requested_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("step IN ('reservation', 'payment', 'done')", name="ck_order_sagas_step"),
        sa.CheckConstraint("step <> 'done' OR deadline_at IS NULL", name="ck_order_sagas_done_no_deadline"),
    )
    # The sweeper's queue: only rows that still wait on an answer.
    op.create_index(
        "idx_order_sagas_deadline",
        "order_sagas",
        ["deadline_at"],
        postgresql_where=sa.text("deadline_at IS NOT NULL"),
    )
    op.create_index("idx_order_sagas_step", "order_sagas", ["step"])
    create_inbox_v1()


def downgrade() -> None:
    drop_inbox_v1()
    op.drop_table("order_sagas")
    op.alter_column("orders", "status", server_default="confirmed")
