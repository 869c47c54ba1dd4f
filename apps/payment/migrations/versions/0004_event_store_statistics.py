"""event_store.event_data without planner statistics (outbox.migrations.event_store_payload_statistics_off says
why: ANALYZE's dearest column, read by no plan), and autovacuum analyzes inbox after half again as many rows,
not a tenth (outbox.migrations.analyze_scale_factor: append-mostly, read by key). Issue 11, as the order,
customer, catalog, warehouse and analytics services did in session 28.

Revision ID: payment_0004
Revises: payment_0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import (
    analyze_scale_factor,
    event_store_payload_statistics_default,
    event_store_payload_statistics_off,
)

revision = "payment_0004"
down_revision = "payment_0003"
branch_labels = None
depends_on = None

TABLES: tuple[str, ...] = ("inbox",)


def upgrade() -> None:
    event_store_payload_statistics_off()
    analyze_scale_factor(TABLES, 0.5)


def downgrade() -> None:
    analyze_scale_factor(TABLES, None)
    event_store_payload_statistics_default()
