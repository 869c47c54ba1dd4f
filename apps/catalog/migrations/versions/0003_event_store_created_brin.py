"""event_store.created_at as BRIN (issue 11): outbox.migrations.event_store_created_brin says why.

Revision ID: catalog_0003
Revises: catalog_0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from outbox.migrations import event_store_created_brin, event_store_created_btree

revision = "catalog_0003"
down_revision = "catalog_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_created_brin()


def downgrade() -> None:
    event_store_created_btree()
