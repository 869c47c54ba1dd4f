"""Payments, the ledger of provider operations (payment_operations), and the consumer inbox.

Revision ID: payment_0002
Revises: payment_0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from outbox.migrations import create_inbox_v1, drop_inbox_v1

revision = "payment_0002"
down_revision = "payment_0001"
branch_labels = None
depends_on = None

# Written out rather than imported from apps.payment.rules: a migration keeps meaning what it meant.
STATUSES = "'pending', 'authorized', 'captured', 'partially_refunded', 'refunded', 'voided', 'declined', 'failed'"
KINDS = "'authorize', 'capture', 'void', 'refund'"
OUTCOMES = "'pending', 'succeeded', 'declined', 'failed'"


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _money(name: str, *, default: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.Numeric(12, 2), nullable=False, server_default="0" if default else None)


def upgrade() -> None:
    create_inbox_v1()
    op.create_table(
        "payments",
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
        _money("amount"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("provider_reference", sa.String(100)),
        sa.Column("payment_method_type", sa.String(30), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        _money("captured_amount", default=True),
        _money("refunded_amount", default=True),
        sa.Column("failure_code", sa.String(100)),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_reason", sa.String(100)),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_payments_amount_nonnegative")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_payments_status_known")),
        sa.CheckConstraint(
            "captured_amount >= 0 AND captured_amount <= amount", name=op.f("ck_payments_captured_within_amount")
        ),
        # Refunds are partial at will, never above what was captured.
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= captured_amount",
            name=op.f("ck_payments_refunded_within_captured"),
        ),
    )
    # GET /api/payments?order_id= and every command the order saga sends (keyed by order).
    op.create_index("ix_payments_order_id", "payments", ["order_id"])
    op.create_table(
        "payment_operations",
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "payment_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("payments.id", name="fk_payment_operations_payment_id_payments"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        _money("amount"),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(255)),
        sa.Column("request", pg.JSONB, nullable=False),
        sa.Column("response", pg.JSONB),
        sa.Column("error", sa.String(500)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _timestamp("next_attempt_at"),
        _timestamp("created_at"),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_payment_operations"),
        # The key sent to the provider: one ledger row per provider request, however often retried.
        sa.UniqueConstraint("idempotency_key", name="uq_payment_operations_idempotency_key"),
        sa.CheckConstraint(f"kind IN ({KINDS})", name=op.f("ck_payment_operations_kind_known")),
        sa.CheckConstraint(f"outcome IN ({OUTCOMES})", name=op.f("ck_payment_operations_outcome_known")),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_payment_operations_amount_nonnegative")),
    )
    op.create_index("ix_payment_operations_payment_id", "payment_operations", ["payment_id", "created_at"])
    op.create_index(
        "ix_payment_operations_due",
        "payment_operations",
        ["next_attempt_at"],
        postgresql_where=sa.text("outcome = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("payment_operations")
    op.drop_table("payments")
    drop_inbox_v1()
