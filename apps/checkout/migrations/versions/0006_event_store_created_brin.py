"""event_store's created_at as a BRIN index instead of a btree (issue 11).

The outbox is append-only in time and deleted from its old end, and only range conditions read
created_at (the retention job, PITR's resend): a BRIN index serves them without an index entry (and a
WAL record read by every walsender and the replica) per event. See outbox.migrations.event_store_created_brin.

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
