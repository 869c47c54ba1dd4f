"""The checkout service's tables: the seed's cart_sessions, cart_items and checkout_sessions, and the
shipping methods and tax rates that price a checkout (configuration rows, seeded by the migration).

Constraints and indexes are declared in the migration (0002_checkout).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Identity, Integer, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from apps.common.access_log import DataAccessLogMixin
from apps.common.models import ServiceBase


class Base(ServiceBase, bind_key="checkout", inbox=True):
    """Every checkout table lives on this service's own metadata, next to its outbox tables."""


Money = Numeric(10, 2)


class CartSession(Base):
    """The seed's cart_sessions: a customer's cart (customer_id) or a guest's (guest_token, hashed)."""

    __tablename__ = "cart_sessions"

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    customer_id: Mapped[str | None] = mapped_column(String(36))
    guest_token: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str | None] = mapped_column(String(3))


class CartItem(Base):
    """The seed's cart_items: one line per product, priced from the catalog when it was last changed."""

    __tablename__ = "cart_items"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    cart_session_id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), ForeignKey("cart_sessions.id", ondelete="CASCADE")
    )
    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True))
    product_sku: Mapped[str] = mapped_column(String(255))
    product_name: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal | None] = mapped_column(Money)
    total_price: Mapped[Decimal | None] = mapped_column(Money)
    warehouse_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class CheckoutSession(Base):
    """The seed's checkout_sessions: a priced quote for one cart, valid until expires_at, completed once."""

    __tablename__ = "checkout_sessions"

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    session_token: Mapped[str] = mapped_column(String(255), unique=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    cart_id: Mapped[uuid.UUID | None] = mapped_column(
        PG_UUID(as_uuid=True), ForeignKey("cart_sessions.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(20))
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    customer_shipping_address_id: Mapped[str | None] = mapped_column(String(36))
    customer_billing_address_id: Mapped[str | None] = mapped_column(String(36))
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    payment_method_type: Mapped[str | None] = mapped_column(String(50))
    shipping_method_id: Mapped[str | None] = mapped_column(String(255))
    shipping_method_name: Mapped[str | None] = mapped_column(String(255))
    shipping_cost: Mapped[Decimal | None] = mapped_column(Money)
    subtotal: Mapped[Decimal] = mapped_column(Money)
    tax_amount: Mapped[Decimal] = mapped_column(Money)
    shipping_amount: Mapped[Decimal] = mapped_column(Money)
    discount_amount: Mapped[Decimal] = mapped_column(Money)
    total_amount: Mapped[Decimal] = mapped_column(Money)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(String(3))
    order_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True), unique=True)


class ShippingMethod(Base):
    """A shipping method's name and fixed cost in one currency (configuration)."""

    __tablename__ = "shipping_methods"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    cost: Mapped[Decimal] = mapped_column(Money)
    is_active: Mapped[bool] = mapped_column(Boolean)


class TaxRate(Base):
    """The tax rate of a destination country (configuration); a country without a row is not shipped to."""

    __tablename__ = "tax_rates"

    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    rate: Mapped[Decimal] = mapped_column(Numeric(5, 4))


class DataAccessLog(DataAccessLogMixin, Base):
    """Who read or changed a person's record here (the seed's data_access_log; apps/common/access_log.py)."""
