"""event_store.created_at as BRIN (issue 11): outbox.migrations.event_store_created_brin says why.

Revision ID: analytics_0004
Revises: analytics_0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from outbox.migrations import event_store_created_brin, event_store_created_btree

revision = "analytics_0004"
down_revision = "analytics_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_created_brin()


def downgrade() -> None:
    event_store_created_btree()
