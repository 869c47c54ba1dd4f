"""event_store.event_data without planner statistics (issue 11): outbox.migrations.event_store_payload_statistics_off
says why (ANALYZE's dearest column, read by no plan).

Revision ID: analytics_0006
Revises: analytics_0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import event_store_payload_statistics_default, event_store_payload_statistics_off

revision = "analytics_0006"
down_revision = "analytics_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_payload_statistics_off()


def downgrade() -> None:
    event_store_payload_statistics_default()
