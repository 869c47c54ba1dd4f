"""Autovacuum analyzes the big append-mostly tables after half again as many rows, not a tenth (issue 11):
outbox.migrations.analyze_scale_factor says why. Each is read by key; their statistics barely move.

Revision ID: order_0016
Revises: order_0015
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import analyze_scale_factor

revision = "order_0016"
down_revision = "order_0015"
branch_labels = None
depends_on = None

TABLES = ("event_store", "outbox_aggregate_version", "inbox", "order_items", "order_status_history", "data_access_log")


def upgrade() -> None:
    analyze_scale_factor(TABLES, 0.5)


def downgrade() -> None:
    analyze_scale_factor(TABLES, None)
