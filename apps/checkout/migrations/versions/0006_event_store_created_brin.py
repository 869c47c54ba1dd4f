"""event_store.created_at as BRIN (issue 11): outbox.migrations.event_store_created_brin says why.

Revision ID: checkout_0006
Revises: checkout_0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from outbox.migrations import event_store_created_brin, event_store_created_btree

revision = "checkout_0006"
down_revision = "checkout_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_created_brin()


def downgrade() -> None:
    event_store_created_btree()
