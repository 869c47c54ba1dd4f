"""event_store.event_data without planner statistics (issue 11): outbox.migrations.event_store_payload_statistics_off
says why (ANALYZE's dearest column, read by no plan).

Revision ID: catalog_0004
Revises: catalog_0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import event_store_payload_statistics_default, event_store_payload_statistics_off

revision = "catalog_0004"
down_revision = "catalog_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_payload_statistics_off()


def downgrade() -> None:
    event_store_payload_statistics_default()
