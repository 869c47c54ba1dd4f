"""event_store.min_reader_version: the oldest version of its event type a consumer must know to read a row
(outbox.migrations.event_store_min_reader_version says why NOT NULL DEFAULT 1). Expand only: the code that
writes it and the connector that sends it as a header come after.

Revision ID: analytics_0008
Revises: analytics_0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from outbox.migrations import event_store_min_reader_version, event_store_min_reader_version_drop

revision = "analytics_0008"
down_revision = "analytics_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_min_reader_version()


def downgrade() -> None:
    event_store_min_reader_version_drop()
