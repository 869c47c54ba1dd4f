"""The addresses on orders (and orders_archive) sealed at rest (issue 14), field by field.

The JSONB columns keep their type: each personal line (names, company, street, city, state, postal code,
phone) becomes an envelope of the order service's keyring, the country stays clear
(apps/common/sealed_addresses.py). Existing rows are sealed here in batches, by the walk the key rotation
uses (apps/common/sealed_tables.py); offline (--sql) that step cannot run (it needs the keys) and is left
to `just keys order reseal`, which seals any line still in clear. The downgrade opens them again.

Revision ID: order_0010
Revises: order_0009
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import context, op

if TYPE_CHECKING:
    from apps.common.sealed_tables import ServiceKeys

revision = "order_0010"
down_revision = "order_0009"
branch_labels = None
depends_on = None

COLUMNS = ("shipping_address", "billing_address")


def _keys() -> ServiceKeys:
    from apps.common.personal import ADDRESS_FIELDS
    from apps.common.sealed_tables import SealedTable, ServiceKeys
    from apps.order.sealed import keyring  # needs the key file: online only

    return ServiceKeys(
        "order",
        keyring,
        [
            SealedTable("orders", COLUMNS, json_fields=ADDRESS_FIELDS),
            SealedTable("orders_archive", COLUMNS, aad_table="orders", json_fields=ADDRESS_FIELDS),
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
