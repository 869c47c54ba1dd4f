"""Autovacuum analyzes the big append-mostly tables after half again as many rows, not a tenth (issue 11):
outbox.migrations.analyze_scale_factor says why. Each is read by key; their statistics barely move.

Revision ID: warehouse_0005
Revises: warehouse_0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import analyze_scale_factor

revision = "warehouse_0005"
down_revision = "warehouse_0004"
branch_labels = None
depends_on = None

TABLES = ("event_store", "outbox_aggregate_version", "inbox", "reservations", "reservation_items")


def upgrade() -> None:
    analyze_scale_factor(TABLES, 0.5)


def downgrade() -> None:
    analyze_scale_factor(TABLES, None)
