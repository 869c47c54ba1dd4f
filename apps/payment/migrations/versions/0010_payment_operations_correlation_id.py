"""payment_operations.correlation_id: the request's or event's id (outbox/correlation.py) that asked for a
ledger operation, so the worker, which carries it out later outside any handler, writes its payment.* event
with it (outbox.correlation.resumed) and the story of a card-paid order does not stop at the ledger. A
nullable uuid as event_store's (16 bytes; NULL on the rows before it and on work nobody's id asked for).
Expand only: the code that writes and reads it comes after.

Revision ID: payment_0010
Revises: payment_0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "payment_0010"
down_revision = "payment_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No default, so no rewrite: a catalogue change under a short ACCESS EXCLUSIVE lock.
    op.add_column("payment_operations", sa.Column("correlation_id", pg.UUID(as_uuid=True), nullable=True))


def downgrade() -> None:
    op.drop_column("payment_operations", "correlation_id")
