"""The consumer inbox (issue 14): checkout now consumes customer.erased (group checkout, apps/checkout/consumers.py).

A new table only (outbox.migrations.create_inbox_v1, the same inbox every consuming service has);
nothing existing changes.

Revision ID: checkout_0005
Revises: checkout_0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from outbox.migrations import create_inbox_v1, drop_inbox_v1

revision = "checkout_0005"
down_revision = "checkout_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_inbox_v1()


def downgrade() -> None:
    drop_inbox_v1()
