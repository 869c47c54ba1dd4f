"""The customer service's tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from advanced_alchemy.base import AdvancedDeclarativeBase
from sqlalchemy import DateTime, Integer, Numeric, String, func
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import Mapped, mapped_column

from outbox.models import AggregateVersionMixin, InboxMixin, OutboxEventMixin


class Base(AdvancedDeclarativeBase, AsyncAttrs):
    """Every customer table lives on this service's own metadata (bind key "customer")."""

    __abstract__ = True
    __bind_key__ = "customer"


class EventStore(OutboxEventMixin, Base):
    """The customer outbox (the seed's event_store)."""


class AggregateVersion(AggregateVersionMixin, Base):
    """Per-aggregate event_version counter."""


class Inbox(InboxMixin, Base):
    """Events the customer-stats group applied here (insert-first idempotency)."""


class CustomerStats(Base):
    """Projection fed by order events: one row per customer (or guest) id."""

    __tablename__ = "customer_stats"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    orders_count: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_count: Mapped[int] = mapped_column(Integer, default=0)
    total_spent: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    last_order_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
