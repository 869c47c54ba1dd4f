"""The order service's read models of customers and products (issue 11), fed by the order-references
consumer group (apps/order/references.py) and refreshed by the customer and catalog APIs on a miss.

Its inbox rows go to the inbox table of 0003 (one table per database, keyed by consumer group).

Revision ID: order_0008
Revises: order_0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "order_0008"
down_revision = "order_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_known_customers",
        sa.Column("customer_id", sa.String(36), primary_key=True),
        sa.Column("known_since", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )
    op.create_table(
        "order_known_products",
        sa.Column("product_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("sku", sa.String(255), nullable=False),
        # Unknown for a product we only heard was deleted (product.deleted carries no price).
        sa.Column("name", sa.String(500)),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("currency", sa.String(3)),
        sa.Column("sellable", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("NOT sellable OR (price IS NOT NULL AND currency IS NOT NULL)", name="ck_known_price"),
    )


def downgrade() -> None:
    op.drop_table("order_known_products")
    op.drop_table("order_known_customers")
