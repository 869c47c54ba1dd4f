"""The catalog service's tables: the seed's products (+ price), categories and product_attributes, and the outbox."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import CHAR, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from apps.common.models import ServiceBase, timestamp


class Base(ServiceBase, bind_key="catalog"):
    """Every catalog table lives on this service's own metadata, next to its outbox tables."""


class Product(Base):
    """The seed's products, plus price and currency (see docs/decisions.md).

    Columns with a server default also get a Python default: the INSERT then carries every value and
    nothing is expired after the flush, so no lazy load (impossible under asyncio) is ever needed.
    """

    __tablename__ = "products"
    __table_args__ = (
        sa.CheckConstraint("price >= 0", name="price_nonnegative"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        sa.Index("idx_products_category_status", "category_id", "status"),
        sa.Index("idx_products_sku_status", "sku", "status"),
        sa.Index(
            "idx_products_active",
            "category_id",
            sa.text("created_at DESC"),
            postgresql_where=sa.text("status = 'active' AND deleted_at IS NULL"),
        ),
        # Keyset pagination walks (created_at, id) newest first over the live rows.
        sa.Index(
            "idx_products_listing",
            sa.text("created_at DESC"),
            sa.text("id DESC"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    )
    sku: Mapped[str] = mapped_column(sa.String(255), unique=True)
    name: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str | None] = mapped_column(sa.Text)
    short_description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default="active", server_default="active")
    type: Mapped[str] = mapped_column(sa.String(50), default="simple", server_default="simple")
    weight: Mapped[Decimal | None] = mapped_column(sa.Numeric(8, 2))
    dimensions: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    category_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    brand_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    manufacturer_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    # "metadata" is reserved on declarative classes; the column keeps the seed's name.
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=sa.text("'{}'::jsonb")
    )
    price: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    currency: Mapped[str] = mapped_column(CHAR(3), default="USD", server_default="USD")
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()
    deleted_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Category(Base):
    """The seed's categories (a tree through parent_id)."""

    __tablename__ = "categories"

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("categories.id"))
    name: Mapped[str] = mapped_column(sa.String(255))
    slug: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    image_url: Mapped[str | None] = mapped_column(sa.String(500))
    sort_order: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.text("true"))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=sa.text("'{}'::jsonb")
    )
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()


class ProductAttribute(Base):
    """The seed's product_attributes: free-form name/value pairs of a product."""

    __tablename__ = "product_attributes"
    # Not in the seed: without it, reading a product's attributes (or checking the foreign key when a
    # product row is deleted) scans the whole table.
    __table_args__ = (sa.Index("idx_product_attributes_product", "product_id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("products.id"))
    attribute_name: Mapped[str] = mapped_column(sa.String(100))
    attribute_value: Mapped[str | None] = mapped_column(sa.Text)
    attribute_type: Mapped[str] = mapped_column(sa.String(50), default="text", server_default="text")
    created_at: Mapped[dt.datetime] = timestamp()
