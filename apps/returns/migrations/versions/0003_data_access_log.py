"""The seed's data_access_log (issue 14): who read or changed returns (each names its customer; descriptions are free text).

A new table only (apps/common/access_log.py defines it once for every service); nothing existing changes.

Revision ID: returns_0003
Revises: returns_0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from apps.common.access_log import create_data_access_log_v1, drop_data_access_log_v1

revision = "returns_0003"
down_revision = "returns_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_data_access_log_v1()


def downgrade() -> None:
    drop_data_access_log_v1()
