"""Autovacuum analyzes the big append-mostly tables after half again as many rows, not a tenth (issue 11):
outbox.migrations.analyze_scale_factor says why. Each is read by key; their statistics barely move.

Revision ID: analytics_0007
Revises: analytics_0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from outbox.migrations import analyze_scale_factor

revision = "analytics_0007"
down_revision = "analytics_0006"
branch_labels = None
depends_on = None

TABLES = ("inbox",)


def upgrade() -> None:
    analyze_scale_factor(TABLES, 0.5)


def downgrade() -> None:
    analyze_scale_factor(TABLES, None)
