"""event_store.event_data without planner statistics (outbox.migrations.event_store_payload_statistics_off says
why: ANALYZE's dearest column, read by no plan), and autovacuum analyzes inbox and data_access_log after half
again as many rows, not a tenth (outbox.migrations.analyze_scale_factor: append-mostly, read by key). Issue 11,
as the order, customer, catalog, warehouse and analytics services did in session 28.

Revision ID: checkout_0007
Revises: checkout_0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import (
    analyze_scale_factor,
    event_store_payload_statistics_default,
    event_store_payload_statistics_off,
)

revision = "checkout_0007"
down_revision = "checkout_0006"
branch_labels = None
depends_on = None

TABLES: tuple[str, ...] = ("inbox", "data_access_log")


def upgrade() -> None:
    event_store_payload_statistics_off()
    analyze_scale_factor(TABLES, 0.5)


def downgrade() -> None:
    analyze_scale_factor(TABLES, None)
    event_store_payload_statistics_default()
