"""event_store.created_at as BRIN (issue 11): outbox.migrations.event_store_created_brin says why.

Revision ID: returns_0005
Revises: returns_0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from outbox.migrations import event_store_created_brin, event_store_created_btree

revision = "returns_0005"
down_revision = "returns_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_created_brin()


def downgrade() -> None:
    event_store_created_btree()
