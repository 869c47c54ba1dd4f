"""Each person's data key for the personal fields of events (issue 14): personal_data_keys.

One row per subject (a customer's id, or a guest checkout's ``cs_...`` id): the key id, the key sealed
under the customer keyring (NULL once destroyed by an erasure), when it was made and destroyed
(apps/customer/data_keys.py). Additive: a new table, nothing to seal.

Revision ID: customer_0007
Revises: customer_0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "customer_0007"
down_revision = "customer_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "personal_data_keys",
        sa.Column("subject_id", sa.String(64), primary_key=True),
        sa.Column("kid", sa.String(40), nullable=False),
        sa.Column("wrapped_key", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("destroyed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("(wrapped_key IS NULL) = (destroyed_at IS NOT NULL)", name="personal_data_keys_destroyed"),
    )


def downgrade() -> None:
    op.drop_table("personal_data_keys")
