"""Autovacuum analyzes the big append-mostly tables after half again as many rows, not a tenth (issue 11):
outbox.migrations.analyze_scale_factor says why. Each is read by key; their statistics barely move.

Revision ID: customer_0012
Revises: customer_0011
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import analyze_scale_factor

revision = "customer_0012"
down_revision = "customer_0011"
branch_labels = None
depends_on = None

TABLES = ("inbox", "customer_stats")


def upgrade() -> None:
    analyze_scale_factor(TABLES, 0.5)


def downgrade() -> None:
    analyze_scale_factor(TABLES, None)
