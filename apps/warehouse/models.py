"""The warehouse service's tables: warehouses, stock levels, reservations (one per order), the outbox and inbox."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from apps.common.models import ServiceBase, timestamp


class Base(ServiceBase, bind_key="warehouse", inbox=True):
    """Every warehouse table lives on this service's own metadata, next to its outbox tables."""


class Warehouse(Base):
    """A place that holds stock. The migration creates the default one (rules.DEFAULT_WAREHOUSE_ID)."""

    __tablename__ = "warehouses"

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    )
    code: Mapped[str] = mapped_column(sa.String(50), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.text("true"))
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()


class StockLevel(Base):
    """Units of a product in a warehouse: on_hand, of which reserved are held for orders.

    The primary key leads with product_id: a product's rows over every warehouse are one index range,
    read (and locked, in key order) by reservations and summed by GET /api/inventory/{product_id}.
    """

    __tablename__ = "stock_levels"
    __table_args__ = (
        sa.CheckConstraint("reserved >= 0", name="reserved_nonnegative"),
        # With reserved >= 0 this also keeps on_hand >= 0: stock never goes negative.
        sa.CheckConstraint("on_hand >= reserved", name="on_hand_covers_reserved"),
    )

    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), sa.ForeignKey("warehouses.id"), primary_key=True
    )
    on_hand: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    reserved: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = timestamp()


class Reservation(Base):
    """What the warehouse decided for one order: its units held (reserved), given back (released), or
    nothing held (failed, with the reason and shortages). order_id is unique: one decision per order."""

    __tablename__ = "reservations"
    __table_args__ = (
        sa.CheckConstraint("status IN ('reserved', 'released', 'failed')", name="status_known"),
        sa.CheckConstraint("(status = 'failed') = (reason IS NOT NULL)", name="reason_iff_failed"),
    )

    id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), unique=True)
    status: Mapped[str] = mapped_column(sa.String(20))
    reason: Mapped[str | None] = mapped_column(sa.String(50))
    # [{product_id, requested, available}] as published in inventory.reservation_failed.
    shortages: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default=sa.text("'[]'::jsonb"))
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()
    released_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))

    # lazy="raise": under asyncio a lazy load cannot happen; reads ask for the items explicitly.
    items: Mapped[list[ReservationItem]] = relationship(
        back_populates="reservation", lazy="raise", order_by="ReservationItem.id"
    )


class ReservationItem(Base):
    """Units of one product held in one warehouse by a reservation (kept after release, as a record)."""

    __tablename__ = "reservation_items"
    __table_args__ = (
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.UniqueConstraint("reservation_id", "product_id", "warehouse_id", name="uq_reservation_items_line"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), sa.ForeignKey("reservations.id", ondelete="CASCADE")
    )
    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True))
    warehouse_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("warehouses.id"))
    quantity: Mapped[int] = mapped_column(sa.Integer)

    reservation: Mapped[Reservation] = relationship(back_populates="items", lazy="raise")
