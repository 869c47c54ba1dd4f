"""The order service's tables: the seed's orders, order_items and order_status_history, plus idempotency keys."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from apps.common.access_log import DataAccessLogMixin
from apps.common.models import ServiceBase

Money = sa.Numeric(10, 2)


class Base(ServiceBase, bind_key="order", inbox=True):
    """Every order table lives on this service's own metadata, next to its outbox and inbox tables (the
    order-saga consumer group's inbox, migration 0003_saga)."""


class Order(Base):
    """The seed's orders. Indexes are declared in the migration (0002_orders)."""

    __tablename__ = "orders"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    order_number: Mapped[str] = mapped_column(sa.String(50), unique=True)
    customer_id: Mapped[str] = mapped_column(sa.String(36))
    status: Mapped[str] = mapped_column(sa.String(20))
    currency: Mapped[str] = mapped_column(sa.String(3))
    subtotal: Mapped[Decimal] = mapped_column(Money)
    tax_amount: Mapped[Decimal] = mapped_column(Money)
    shipping_amount: Mapped[Decimal] = mapped_column(Money)
    discount_amount: Mapped[Decimal] = mapped_column(Money)
    total_amount: Mapped[Decimal] = mapped_column(Money)
    payment_id: Mapped[str | None] = mapped_column(sa.String(255))
    payment_method: Mapped[str | None] = mapped_column(sa.String(50))
    payment_status: Mapped[str] = mapped_column(sa.String(20))
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    notes: Mapped[str | None] = mapped_column(sa.Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # Which service created the order; created_by_service until the expand/contract of migrations 0005-0007.
    source_service: Mapped[str] = mapped_column(sa.String(50))


class OrderItem(Base):
    """The seed's order_items: a priced copy of the product at the time of the order."""

    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("orders.id"))
    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True))
    product_sku: Mapped[str] = mapped_column(sa.String(255))
    product_name: Mapped[str] = mapped_column(sa.String(500))
    quantity: Mapped[int] = mapped_column(sa.Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    total_price: Mapped[Decimal] = mapped_column(Money)
    discount_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    tax_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    warehouse_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)


class OrderStatusHistory(Base):
    """The seed's order_status_history: one row per status an order entered, the first one included."""

    __tablename__ = "order_status_history"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("orders.id"))
    status_from: Mapped[str | None] = mapped_column(sa.String(20))
    status_to: Mapped[str] = mapped_column(sa.String(20))
    changed_by: Mapped[str | None] = mapped_column(sa.String(255))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class IdempotencyKey(Base):
    """An Idempotency-Key seen on POST /api/orders: the request's fingerprint and the order it created.
    A key is the customer's own (primary key (customer_id, key), migrations order_0017-0018): another
    customer's use of the same key neither refuses nor tells them anything (docs/decisions.md)."""

    __tablename__ = "idempotency_keys"

    # The customer the order is for (the body's customer_id, which a customer caller must be): an admin
    # placing for a customer uses that customer's namespace, so a retry replays whichever of them sends it.
    customer_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("orders.id"))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.text("now()"))


class DataAccessLog(DataAccessLogMixin, Base):
    """Who read or changed a person's record here (the seed's data_access_log; apps/common/access_log.py)."""
