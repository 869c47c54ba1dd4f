"""The seed's data_access_log (issue 14): who read or changed customers and their addresses.

A new table only (apps/common/access_log.py defines it once for every service); nothing existing changes.

Revision ID: customer_0006
Revises: customer_0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from apps.common.access_log import create_data_access_log_v1, drop_data_access_log_v1

revision = "customer_0006"
down_revision = "customer_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_data_access_log_v1()


def downgrade() -> None:
    drop_data_access_log_v1()
