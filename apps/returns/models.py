"""The returns service's tables: the seed's return_requests and return_items, and the order projection.

Constraints and indexes are declared in the migration (0002_returns); the models map what it creates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from apps.common.access_log import DataAccessLogMixin
from apps.common.models import ServiceBase, timestamp

Money = sa.Numeric(10, 2)


class Base(ServiceBase, bind_key="returns", inbox=True):
    """Every returns table lives on this service's own metadata, next to its outbox tables."""


class ReturnRequest(Base):
    """The seed's return_requests, plus ``currency``, ``refund_id`` (the payment ledger's refund
    operation this return asked for), ``refunded_at``, and ``no_refund_reason`` (why nothing is refunded:
    the order was placed without payment; the payment service is then asked nothing)."""

    __tablename__ = "return_requests"

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    return_number: Mapped[str] = mapped_column(sa.String(50), unique=True)
    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True))
    customer_id: Mapped[str] = mapped_column(sa.String(36))
    status: Mapped[str] = mapped_column(sa.String(20))
    return_type: Mapped[str] = mapped_column(sa.String(20))
    reason: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str | None] = mapped_column(sa.Text)
    approved_by: Mapped[str | None] = mapped_column(sa.String(255))
    approved_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    processed_by: Mapped[str | None] = mapped_column(sa.String(255))
    processed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    total_refund_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    refund_shipping: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    refund_tax: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    return_shipping_label_url: Mapped[str | None] = mapped_column(sa.String(500))
    return_tracking_number: Mapped[str | None] = mapped_column(sa.String(100))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()
    expires_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(sa.String(3))
    refund_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True), unique=True)
    refunded_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    no_refund_reason: Mapped[str | None] = mapped_column(sa.String(255))

    items: Mapped[list[ReturnItem]] = relationship(
        back_populates="request", lazy="raise", order_by="(ReturnItem.created_at, ReturnItem.id)"
    )


class ReturnItem(Base):
    """The seed's return_items: units of one order line asked back, what arrived, and their restock."""

    __tablename__ = "return_items"

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    return_request_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("return_requests.id"))
    order_item_id: Mapped[int] = mapped_column(sa.BigInteger)
    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True))
    product_sku: Mapped[str] = mapped_column(sa.String(255))
    product_name: Mapped[str] = mapped_column(sa.String(500))
    quantity_returned: Mapped[int] = mapped_column(sa.Integer)
    quantity_received: Mapped[int] = mapped_column(sa.Integer, default=0)
    return_reason: Mapped[str | None] = mapped_column(sa.String(100))
    condition_received: Mapped[str | None] = mapped_column(sa.String(50))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    refund_amount: Mapped[Decimal] = mapped_column(Money)
    restocked: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    restocked_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    warehouse_id: Mapped[uuid.UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()

    request: Mapped[ReturnRequest] = relationship(back_populates="items", lazy="raise")


class OrderSnapshot(Base):
    """What the returns service knows of an order (a projection, consumer group ``returns``).

    The order's events fill who, what currency, its status and when it was delivered; the lines with
    their order_items ids and the tax/shipping/discount split are not in the events, so the first return
    of an order reads them once from the order API (``lines`` is null until then). See docs/decisions.md.
    """

    __tablename__ = "order_snapshots"

    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(sa.String(36))
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    status: Mapped[str | None] = mapped_column(sa.String(20))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    subtotal: Mapped[Decimal | None] = mapped_column(Money)
    discount_amount: Mapped[Decimal | None] = mapped_column(Money)
    tax_amount: Mapped[Decimal | None] = mapped_column(Money)
    shipping_amount: Mapped[Decimal | None] = mapped_column(Money)
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # Whether a payment was taken (the order API's payment_status, read with the lines); null until read.
    paid: Mapped[bool | None] = mapped_column(sa.Boolean)
    # Where the status came from last: "events" (the projection) or "api" (the fallback).
    status_source: Mapped[str] = mapped_column(sa.String(10))
    updated_at: Mapped[dt.datetime] = timestamp()


class DataAccessLog(DataAccessLogMixin, Base):
    """Who read or changed a person's record here (the seed's data_access_log; apps/common/access_log.py)."""
