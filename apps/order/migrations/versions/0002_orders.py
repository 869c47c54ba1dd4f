"""Orders, order items, status history (with the seed's indexes) and idempotency keys.

Revision ID: order_0002
Revises: order_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "order_0002"
down_revision = "order_0001"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(10, 2)
JSON_EMPTY = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("order_number", sa.String(50), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="confirmed"),
        sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
        sa.Column("subtotal", MONEY, nullable=False, server_default="0"),
        sa.Column("tax_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("shipping_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("discount_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("total_amount", MONEY, nullable=False),
        sa.Column("payment_id", sa.String(255)),
        sa.Column("payment_method", sa.String(50)),
        # The seed defaults this to 'completed' (orders came from checkout after payment); orders placed
        # directly through this API have not been paid yet.
        sa.Column("payment_status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("shipping_address", pg.JSONB),
        sa.Column("billing_address", pg.JSONB),
        sa.Column("notes", sa.Text),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=JSON_EMPTY),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("created_by_service", sa.String(50), nullable=False, server_default="order-service"),
        sa.CheckConstraint("total_amount >= 0", name="total_nonnegative"),
    )
    op.create_table(
        "order_items",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("order_id", pg.UUID(as_uuid=True), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("product_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("product_sku", sa.String(255), nullable=False),
        sa.Column("product_name", sa.String(500), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("total_price", MONEY, nullable=False),
        sa.Column("discount_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("tax_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("warehouse_id", pg.UUID(as_uuid=True)),
        sa.Column("reservation_id", pg.UUID(as_uuid=True)),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=JSON_EMPTY),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )
    op.create_table(
        "order_status_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("order_id", pg.UUID(as_uuid=True), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("status_from", sa.String(20)),
        sa.Column("status_to", sa.String(20), nullable=False),
        sa.Column("changed_by", sa.String(255)),
        sa.Column("reason", sa.Text),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=JSON_EMPTY),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("order_id", pg.UUID(as_uuid=True), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # The seed's indexes. idx_orders_created and idx_orders_created_desc are the same index in the seed;
    # it is created once.
    op.create_index("idx_orders_customer", "orders", ["customer_id"])
    op.create_index("idx_orders_status", "orders", ["status"])
    op.create_index("idx_orders_created", "orders", [sa.text("created_at DESC")])
    op.create_index("idx_orders_customer_status", "orders", ["customer_id", "status"])
    op.create_index(
        "idx_orders_complex_search",
        "orders",
        ["customer_id", "status", sa.text("created_at DESC")],
        postgresql_where=sa.text("status IN ('confirmed', 'processing', 'shipped')"),
    )
    # A customer's orders, newest first, for keyset pagination (created_at, id).
    op.create_index(
        "idx_orders_customer_created", "orders", ["customer_id", sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index("idx_order_items_order", "order_items", ["order_id"])
    op.create_index("idx_order_items_product", "order_items", ["product_id"])
    op.create_index("idx_order_items_product_warehouse", "order_items", ["product_id", "warehouse_id"])
    op.create_index("idx_order_status_history_order", "order_status_history", ["order_id"])
    op.create_index("idx_idempotency_keys_created", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    for table in ("idempotency_keys", "order_status_history", "order_items", "orders"):
        op.drop_table(table)
