"""Inventory: warehouses (with the default one), stock levels, reservations and their items, the consumer inbox.

Revision ID: warehouse_0002
Revises: warehouse_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from outbox.migrations import create_inbox_v1, drop_inbox_v1

revision = "warehouse_0002"
down_revision = "warehouse_0001"
branch_labels = None
depends_on = None

# apps.warehouse.rules.DEFAULT_WAREHOUSE_ID, written out: a migration keeps meaning what it meant when it ran.
DEFAULT_WAREHOUSE_ID = "00000000-0000-0000-0000-000000000001"


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    create_inbox_v1()
    op.create_table(
        "warehouses",
        sa.Column("id", pg.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()")),
        sa.Column("code", sa.String(50), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_warehouses"),
        sa.UniqueConstraint("code", name="uq_warehouses_code"),
    )
    op.execute(
        "INSERT INTO warehouses (id, code, name) "
        f"VALUES ('{DEFAULT_WAREHOUSE_ID}', 'default', 'Default warehouse') ON CONFLICT (id) DO NOTHING"
    )
    op.create_table(
        "stock_levels",
        # product_id first: one product's rows over every warehouse are one index range (reads, locks).
        sa.Column("product_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "warehouse_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("warehouses.id", name="fk_stock_levels_warehouse_id_warehouses"),
            nullable=False,
        ),
        sa.Column("on_hand", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reserved", sa.Integer, nullable=False, server_default="0"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("product_id", "warehouse_id", name="pk_stock_levels"),
        # The service checks both (apps/warehouse/rules.py); these make oversold stock impossible.
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_stock_levels_reserved_nonnegative")),
        sa.CheckConstraint("on_hand >= reserved", name=op.f("ck_stock_levels_on_hand_covers_reserved")),
    )
    op.create_table(
        "reservations",
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(50)),
        sa.Column("shortages", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("released_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_reservations"),
        # One decision per order: the idempotency key of the reservation consumer.
        sa.UniqueConstraint("order_id", name="uq_reservations_order_id"),
        sa.CheckConstraint("status IN ('reserved', 'released', 'failed')", name=op.f("ck_reservations_status_known")),
        sa.CheckConstraint(
            "(status = 'failed') = (reason IS NOT NULL)", name=op.f("ck_reservations_reason_iff_failed")
        ),
    )
    op.create_table(
        "reservation_items",
        sa.Column("id", sa.BigInteger, sa.Identity()),
        sa.Column(
            "reservation_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey(
                "reservations.id", name="fk_reservation_items_reservation_id_reservations", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("product_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "warehouse_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("warehouses.id", name="fk_reservation_items_warehouse_id_warehouses"),
            nullable=False,
        ),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reservation_items"),
        # Leads with reservation_id, so it is also the index that loads a reservation's items.
        sa.UniqueConstraint("reservation_id", "product_id", "warehouse_id", name="uq_reservation_items_line"),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservation_items_quantity_positive")),
    )


def downgrade() -> None:
    op.drop_table("reservation_items")
    op.drop_table("reservations")
    op.drop_table("stock_levels")
    op.drop_table("warehouses")
    drop_inbox_v1()
