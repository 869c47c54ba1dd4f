"""event_store.correlation_id: the request (or consumed event) whose work wrote a row; why a nullable uuid:
outbox.migrations.event_store_correlation_id. Expand only: the code that writes it and the connector that
sends it as a header come after.

Revision ID: returns_0008
Revises: returns_0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from outbox.migrations import event_store_correlation_id, event_store_correlation_id_drop

revision = "returns_0008"
down_revision = "returns_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    event_store_correlation_id()


def downgrade() -> None:
    event_store_correlation_id_drop()
