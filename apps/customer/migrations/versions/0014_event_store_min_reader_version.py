"""event_store.min_reader_version: the oldest version of its event type a consumer must know to read a row
(outbox.migrations.event_store_min_reader_version says why NOT NULL DEFAULT 1). Expand only: the code that
writes it and the connector that sends it as a header come after.

Revision ID: customer_0014
Revises: customer_0013
Create Date: 2026-11-28
"""

from __future__ import annotations

from outbox.migrations import event_store_min_reader_version, event_store_min_reader_version_drop

revision = "customer_0014"
down_revision = "customer_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_min_reader_version()


def downgrade() -> None:
    event_store_min_reader_version_drop()
