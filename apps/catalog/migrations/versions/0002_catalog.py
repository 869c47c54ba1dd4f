"""Catalog tables: the seed's products (+ price, currency), categories, product_attributes and their indexes.

Revision ID: catalog_0002
Revises: catalog_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "catalog_0002"
down_revision = "catalog_0001"
branch_labels = None
depends_on = None


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", pg.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()")),
        sa.Column(
            "parent_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("categories.id", name="fk_categories_parent_id_categories"),
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("slug", sa.String(255), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("image_url", sa.String(500)),
        sa.Column("sort_order", sa.Integer, nullable=False, server_default="0"),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_categories"),
        sa.UniqueConstraint("slug", name="uq_categories_slug"),
    )
    op.create_table(
        "products",
        sa.Column("id", pg.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()")),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("short_description", sa.Text),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("type", sa.String(50), nullable=False, server_default="simple"),
        sa.Column("weight", sa.Numeric(8, 2)),
        sa.Column("dimensions", pg.JSONB),
        # No foreign key to categories, as in the seed: a product may name a category that another
        # system owns, and category deletes must not cascade into the catalog of sellable items.
        sa.Column("category_id", pg.UUID(as_uuid=True)),
        sa.Column("brand_id", pg.UUID(as_uuid=True)),
        sa.Column("manufacturer_id", pg.UUID(as_uuid=True)),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("currency", pg.CHAR(3), nullable=False, server_default="USD"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.UniqueConstraint("sku", name="uq_products_sku"),
        # The application checks both (apps/catalog/rules.py); the database refuses what slips past.
        sa.CheckConstraint("price >= 0", name=op.f("ck_products_price_nonnegative")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_products_currency_iso")),
    )
    op.create_index("idx_products_category_status", "products", ["category_id", "status"])
    op.create_index("idx_products_sku_status", "products", ["sku", "status"])
    op.create_index(
        "idx_products_active",
        "products",
        ["category_id", sa.text("created_at DESC")],
        postgresql_where=sa.text("status = 'active' AND deleted_at IS NULL"),
    )
    # Keyset pagination of GET /api/products: (created_at, id) newest first over live rows.
    op.create_index(
        "idx_products_listing",
        "products",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "product_attributes",
        sa.Column("id", sa.BigInteger, sa.Identity()),
        sa.Column(
            "product_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("products.id", name="fk_product_attributes_product_id_products"),
            nullable=False,
        ),
        sa.Column("attribute_name", sa.String(100), nullable=False),
        sa.Column("attribute_value", sa.Text),
        sa.Column("attribute_type", sa.String(50), nullable=False, server_default="text"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_product_attributes"),
    )
    op.create_index("idx_product_attributes_product", "product_attributes", ["product_id"])


def downgrade() -> None:
    op.drop_table("product_attributes")
    op.drop_table("products")
    op.drop_table("categories")
