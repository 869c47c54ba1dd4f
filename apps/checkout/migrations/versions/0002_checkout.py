"""Carts, cart items and checkout sessions (the seed's columns), shipping methods and tax rates.

Revision ID: checkout_0002
Revises: checkout_0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "checkout_0002"
down_revision = "checkout_0001"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(10, 2)
JSON_EMPTY = sa.text("'{}'::jsonb")
NOW = sa.func.now()

# Configuration, not code: the service reads these rows; changing a price or a rate is an UPDATE.
SHIPPING_METHODS = [
    ("standard", "USD", "Standard (3-5 business days)", "5.00"),
    ("express", "USD", "Express (1-2 business days)", "15.00"),
    ("standard", "EUR", "Standard (3-5 business days)", "4.50"),
    ("express", "EUR", "Express (1-2 business days)", "13.50"),
    ("standard", "GBP", "Standard (3-5 business days)", "4.00"),
    ("express", "GBP", "Express (1-2 business days)", "12.00"),
]
TAX_RATES = [
    ("US", "0.0700"),
    ("CA", "0.0500"),
    ("GB", "0.2000"),
    ("DE", "0.1900"),
    ("FR", "0.2000"),
    ("NL", "0.2100"),
    ("ES", "0.2100"),
    ("IT", "0.2200"),
]


def upgrade() -> None:
    op.create_table(
        "cart_sessions",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("session_id", sa.String(255), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(36)),
        # sha256 (hex) of the guest's token, never the token itself: a database dump opens no cart.
        sa.Column("guest_token", sa.String(255)),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=JSON_EMPTY),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        # Added to the seed: the currency of the cart's lines (NULL until the first line).
        sa.Column("currency", sa.String(3)),
        sa.CheckConstraint("status IN ('active', 'converted', 'abandoned')", name="cart_status_known"),
        sa.CheckConstraint("(customer_id IS NULL) <> (guest_token IS NULL)", name="cart_customer_or_guest"),
        sa.CheckConstraint("currency IS NULL OR currency ~ '^[A-Z]{3}$'", name="cart_currency_iso"),
    )
    op.create_table(
        "cart_items",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "cart_session_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("cart_sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("product_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("product_sku", sa.String(255), nullable=False),
        # Added to the seed: the cart view shows names, and checkout.completed carries them.
        sa.Column("product_name", sa.String(500), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", MONEY),
        sa.Column("total_price", MONEY),
        sa.Column("warehouse_id", pg.UUID(as_uuid=True)),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("quantity > 0 AND quantity <= 1000", name="cart_item_quantity_range"),
        sa.CheckConstraint("unit_price >= 0", name="cart_item_unit_price_nonnegative"),
        sa.CheckConstraint("total_price >= 0", name="cart_item_total_price_nonnegative"),
        # One line per product: adding a product again raises that line's quantity (an upsert).
        sa.UniqueConstraint("cart_session_id", "product_id", name="uq_cart_items_cart_product"),
    )
    op.create_table(
        "checkout_sessions",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("session_token", sa.String(255), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("cart_id", pg.UUID(as_uuid=True), sa.ForeignKey("cart_sessions.id", ondelete="SET NULL")),
        sa.Column("status", sa.String(20), nullable=False, server_default="initialized"),
        sa.Column("shipping_address", pg.JSONB),
        sa.Column("billing_address", pg.JSONB),
        sa.Column("customer_shipping_address_id", sa.String(36)),
        sa.Column("customer_billing_address_id", sa.String(36)),
        sa.Column("payment_method_id", sa.String(255)),
        sa.Column("payment_method_type", sa.String(50)),
        sa.Column("shipping_method_id", sa.String(255)),
        sa.Column("shipping_method_name", sa.String(255)),
        sa.Column("shipping_cost", MONEY),
        sa.Column("subtotal", MONEY, nullable=False),
        sa.Column("tax_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("shipping_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("discount_amount", MONEY, nullable=False, server_default="0"),
        sa.Column("total_amount", MONEY, nullable=False),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=JSON_EMPTY),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        # Added to the seed: the currency of every amount, and the id the order will be created with.
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("order_id", pg.UUID(as_uuid=True), unique=True),
        sa.CheckConstraint(
            "status IN ('initialized', 'completed', 'expired', 'cancelled')", name="checkout_status_known"
        ),
        sa.CheckConstraint(
            "subtotal >= 0 AND tax_amount >= 0 AND shipping_amount >= 0 AND discount_amount >= 0 "
            "AND total_amount >= 0 AND (shipping_cost IS NULL OR shipping_cost >= 0)",
            name="checkout_money_nonnegative",
        ),
        sa.CheckConstraint("(status = 'completed') = (completed_at IS NOT NULL)", name="checkout_completed_at"),
    )
    shipping = op.create_table(
        "shipping_methods",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.CheckConstraint("cost >= 0", name="shipping_cost_nonnegative"),
    )
    taxes = op.create_table(
        "tax_rates",
        sa.Column("country", sa.String(2), primary_key=True),
        sa.Column("rate", sa.Numeric(5, 4), nullable=False),
        sa.CheckConstraint("rate >= 0 AND rate < 1", name="tax_rate_range"),
        sa.CheckConstraint("country ~ '^[A-Z]{2}$'", name="tax_country_iso"),
    )
    op.bulk_insert(shipping, [{"id": i, "currency": c, "name": n, "cost": v} for i, c, n, v in SHIPPING_METHODS])
    op.bulk_insert(taxes, [{"country": c, "rate": r} for c, r in TAX_RATES])

    # One active cart per customer and per guest token; the partial indexes are also the look-ups.
    op.create_index(
        "uq_cart_sessions_active_customer",
        "cart_sessions",
        ["customer_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active' AND customer_id IS NOT NULL"),
    )
    op.create_index(
        "uq_cart_sessions_guest_token",
        "cart_sessions",
        ["guest_token"],
        unique=True,
        postgresql_where=sa.text("guest_token IS NOT NULL"),
    )
    # The lifecycle jobs: idle active carts, abandoned carts by age, sessions by expiry.
    op.create_index(
        "idx_cart_sessions_active_idle", "cart_sessions", ["updated_at"], postgresql_where=sa.text("status = 'active'")
    )
    op.create_index(
        "idx_cart_sessions_abandoned",
        "cart_sessions",
        ["updated_at"],
        postgresql_where=sa.text("status = 'abandoned'"),
    )
    op.create_index("idx_checkout_sessions_expires", "checkout_sessions", ["expires_at"])
    op.create_index("idx_checkout_sessions_cart", "checkout_sessions", ["cart_id"])
    op.create_index("idx_checkout_sessions_customer", "checkout_sessions", ["customer_id"])


def downgrade() -> None:
    for table in ("tax_rates", "shipping_methods", "checkout_sessions", "cart_items", "cart_sessions"):
        op.drop_table(table)
