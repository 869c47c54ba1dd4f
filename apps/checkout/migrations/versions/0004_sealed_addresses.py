"""The addresses on checkout_sessions sealed at rest (issue 14), field by field.

The JSONB columns keep their type: each personal line becomes an envelope of the checkout service's keyring,
the country stays clear (apps/common/sealed_addresses.py). Existing rows are sealed in batches by the
rotation's walk; offline (--sql) that needs keys it does not have, so `just keys checkout reseal` finishes
it. The downgrade opens them again.

Revision ID: checkout_0004
Revises: checkout_0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import context, op

revision = "checkout_0004"
down_revision = "checkout_0003"
branch_labels = None
depends_on = None

COLUMNS = ("shipping_address", "billing_address")


def _data_step(*, seal: bool) -> None:
    if context.is_offline_mode():
        return
    from apps.common.personal import ADDRESS_FIELDS  # the code that holds the keys: online only
    from apps.common.sealed_tables import SealedTable, migration_data_step

    tables = [
        SealedTable("checkout_sessions", COLUMNS, json_fields=ADDRESS_FIELDS),
    ]
    migration_data_step(op.get_bind(), "checkout", tables, seal=seal)


def upgrade() -> None:
    _data_step(seal=True)


def downgrade() -> None:
    _data_step(seal=False)
