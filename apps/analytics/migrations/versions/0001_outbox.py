"""The outbox: event_store, per-aggregate versions, heartbeat table and the CDC publication.

Revision ID: analytics_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from outbox.migrations import create_outbox_v1, drop_outbox_v1

revision = "analytics_0001"
down_revision = None
branch_labels = None
depends_on = None

PUBLICATION = "analytics_outbox"


def upgrade() -> None:
    create_outbox_v1(publication=PUBLICATION)


def downgrade() -> None:
    drop_outbox_v1(publication=PUBLICATION)
