"""The addresses on checkout_sessions sealed at rest (issue 14), field by field.

The JSONB columns keep their type: each personal line (names, company, street, city, state, postal code,
phone) becomes an envelope of the checkout service's keyring, the country stays clear
(apps/common/sealed_addresses.py). Existing rows are sealed here in batches, by the walk the key rotation
uses (apps/common/sealed_tables.py); offline (--sql) that step cannot run (it needs the keys) and is left
to `just keys checkout reseal`, which seals any line still in clear. The downgrade opens them again.

Revision ID: checkout_0004
Revises: checkout_0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import context, op

if TYPE_CHECKING:
    from apps.common.sealed_tables import ServiceKeys

revision = "checkout_0004"
down_revision = "checkout_0003"
branch_labels = None
depends_on = None

COLUMNS = ("shipping_address", "billing_address")


def _keys() -> ServiceKeys:
    from apps.checkout.sealed import keyring  # needs the key file: online only
    from apps.common.personal import ADDRESS_FIELDS
    from apps.common.sealed_tables import SealedTable, ServiceKeys

    return ServiceKeys(
        "checkout",
        keyring,
        [
            SealedTable("checkout_sessions", COLUMNS, json_fields=ADDRESS_FIELDS),
        ],
    )


def upgrade() -> None:
    if not context.is_offline_mode():
        keys = _keys()
        for table in keys.tables:
            keys.reseal_table(op.get_bind(), table)


def downgrade() -> None:
    if not context.is_offline_mode():
        keys = _keys()
        for table in keys.tables:
            keys.unseal_table(op.get_bind(), table)
