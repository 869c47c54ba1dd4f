"""Return requests and return items (the seed's columns), the order projection, and the consumer inbox.

Revision ID: returns_0002
Revises: returns_0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from outbox.migrations import create_inbox_v1, drop_inbox_v1

revision = "returns_0002"
down_revision = "returns_0001"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(10, 2)
JSON_EMPTY = sa.text("'{}'::jsonb")
# Written out rather than imported from apps.returns.rules: a migration keeps meaning what it meant.
STATUSES = "'requested', 'approved', 'rejected', 'received', 'refunded', 'refund_failed', 'completed', 'expired'"
TYPES = "'refund', 'refund_only'"
CONDITIONS = "'new', 'opened', 'used', 'damaged', 'defective'"


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    create_inbox_v1()
    op.create_table(
        "return_requests",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("return_number", sa.String(50), nullable=False, unique=True),
        sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="requested"),
        sa.Column("return_type", sa.String(20), nullable=False, server_default="refund"),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("approved_by", sa.String(255)),
        sa.Column("approved_at", sa.DateTime(timezone=True)),
        sa.Column("processed_by", sa.String(255)),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        sa.Column("total_refund_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("refund_shipping", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("refund_tax", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("return_shipping_label_url", sa.String(500)),
        sa.Column("return_tracking_number", sa.String(100)),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=JSON_EMPTY),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        # Added to the seed: the order's currency, the payment refund this return asked for, and when
        # the payment service said it was done.
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("refund_id", pg.UUID(as_uuid=True), unique=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="return_status_known"),
        sa.CheckConstraint(f"return_type IN ({TYPES})", name="return_type_known"),
        sa.CheckConstraint("total_refund_amount >= 0", name="return_refund_nonnegative"),
    )
    op.create_index("ix_return_requests_order_id", "return_requests", ["order_id"])
    op.create_index("ix_return_requests_customer", "return_requests", ["customer_id", "created_at", "id"])
    op.create_index("ix_return_requests_created", "return_requests", ["created_at", "id"])
    # The expiry sweep's queue: only requests that can still expire, by due time.
    op.create_index(
        "ix_return_requests_expiring",
        "return_requests",
        ["expires_at"],
        postgresql_where=sa.text("status IN ('requested', 'approved')"),
    )
    op.create_table(
        "return_items",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("return_request_id", pg.UUID(as_uuid=True), sa.ForeignKey("return_requests.id"), nullable=False),
        sa.Column("order_item_id", sa.BigInteger, nullable=False),
        sa.Column("product_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("product_sku", sa.String(255), nullable=False),
        sa.Column("product_name", sa.String(500), nullable=False),
        sa.Column("quantity_returned", sa.Integer, nullable=False),
        sa.Column("quantity_received", sa.Integer, nullable=False, server_default="0"),
        sa.Column("return_reason", sa.String(100)),
        sa.Column("condition_received", sa.String(50)),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("refund_amount", MONEY, nullable=False),
        sa.Column("restocked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("restocked_at", sa.DateTime(timezone=True)),
        sa.Column("warehouse_id", pg.UUID(as_uuid=True)),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=JSON_EMPTY),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("quantity_returned > 0", name="return_item_quantity_positive"),
        sa.CheckConstraint(
            "quantity_received >= 0 AND quantity_received <= quantity_returned", name="return_item_received_within"
        ),
        sa.CheckConstraint("unit_price >= 0 AND refund_amount >= 0", name="return_item_amounts_nonnegative"),
        sa.CheckConstraint(
            f"condition_received IS NULL OR condition_received IN ({CONDITIONS})", name="return_item_condition_known"
        ),
        sa.CheckConstraint("NOT restocked OR restocked_at IS NOT NULL", name="return_item_restocked_when"),
        sa.UniqueConstraint("return_request_id", "order_item_id", name="uq_return_items_line"),
    )
    op.create_index("ix_return_items_order_item_id", "return_items", ["order_item_id"])
    op.create_table(
        "order_snapshots",
        sa.Column("order_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("customer_id", sa.String(36)),
        sa.Column("currency", sa.String(3)),
        sa.Column("status", sa.String(20)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("subtotal", MONEY),
        sa.Column("discount_amount", MONEY),
        sa.Column("tax_amount", MONEY),
        sa.Column("shipping_amount", MONEY),
        sa.Column("lines", pg.JSONB),
        sa.Column("status_source", sa.String(10), nullable=False),
        _timestamp("updated_at"),
        sa.CheckConstraint("status_source IN ('events', 'api')", name="order_snapshot_source_known"),
    )


def downgrade() -> None:
    op.drop_table("order_snapshots")
    op.drop_table("return_items")
    op.drop_table("return_requests")
    drop_inbox_v1()
