"""The seed's data_access_log (issue 14): who read or changed orders (they hold copies of the shipping and billing addresses).

A new table only (apps/common/access_log.py defines it once for every service); nothing existing changes.

Revision ID: order_0009
Revises: order_0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from apps.common.access_log import create_data_access_log_v1, drop_data_access_log_v1

revision = "order_0009"
down_revision = "order_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_data_access_log_v1()


def downgrade() -> None:
    drop_data_access_log_v1()
