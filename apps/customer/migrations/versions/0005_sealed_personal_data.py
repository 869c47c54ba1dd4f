"""Customers' personal data sealed (issue 14): email, phone, date of birth and every address line.

The sealed columns keep their names and become TEXT (an envelope is longer than the seed's VARCHARs;
apps/customer/sealed.py). customers.email's UNIQUE and lower-case CHECK move to ``email_index`` (the
HMAC blind index of the lower-cased email). Existing rows are sealed here, in batches, by the same walk
the key rotation uses (apps/customer/keys.py); offline (--sql) that data step cannot run (it needs the
keys), so it is left to `python -m apps.customer.keys reseal`, which seals any value still in clear.

One step, not expand/contract: the type change and the sealing hold customers and customer_addresses
under ACCESS EXCLUSIVE for the migration (10k customers: about 2 s), and the customer API is restarted
right after (docs/decisions.md, "Personal data sealed in the customer service").

Revision ID: customer_0005
Revises: customer_0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "customer_0005"
down_revision = "customer_0004"
branch_labels = None
depends_on = None

CUSTOMER_COLUMNS = ("email", "phone", "date_of_birth")
ADDRESS_COLUMNS = (
    "first_name",
    "last_name",
    "company",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "phone",
)
# The seed's types, for the downgrade.
_CUSTOMER_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "email": sa.String(255),
    "phone": sa.String(20),
    "date_of_birth": sa.Date(),
}
_ADDRESS_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "first_name": sa.String(100),
    "last_name": sa.String(100),
    "company": sa.String(255),
    "address_line1": sa.String(255),
    "address_line2": sa.String(255),
    "city": sa.String(100),
    "state": sa.String(100),
    "postal_code": sa.String(20),
    "phone": sa.String(20),
}


def upgrade() -> None:
    op.add_column("customers", sa.Column("email_index", sa.LargeBinary))
    op.drop_constraint(op.f("ck_customers_email_lowercase"), "customers", type_="check")
    op.drop_constraint("uq_customers_email", "customers", type_="unique")
    op.drop_index("idx_customers_email_status", table_name="customers")
    for column in CUSTOMER_COLUMNS:
        op.alter_column("customers", column, type_=sa.Text(), postgresql_using=f"{column}::text")
    for column in ADDRESS_COLUMNS:
        op.alter_column("customer_addresses", column, type_=sa.Text())
    if not context.is_offline_mode():
        from apps.customer.keys import TABLES, reseal_table  # needs the key file: online only

        for table in TABLES:
            reseal_table(op.get_bind(), table)
    op.alter_column("customers", "email_index", nullable=False)
    op.create_unique_constraint("uq_customers_email_index", "customers", ["email_index"])


def downgrade() -> None:
    if not context.is_offline_mode():
        _open_every_value()
    op.drop_constraint("uq_customers_email_index", "customers", type_="unique")
    op.drop_column("customers", "email_index")
    for column, type_ in _CUSTOMER_TYPES.items():
        op.alter_column("customers", column, type_=type_, postgresql_using=f"{column}::{type_.compile()}")
    for column, type_ in _ADDRESS_TYPES.items():
        op.alter_column("customer_addresses", column, type_=type_)
    op.create_unique_constraint("uq_customers_email", "customers", ["email"])
    op.create_check_constraint(op.f("ck_customers_email_lowercase"), "customers", "email = lower(email)")
    op.create_index("idx_customers_email_status", "customers", ["email", "status"])


def _open_every_value() -> None:
    """Write every sealed value back in clear (the downgrade's code reads plain columns)."""
    from apps.common.crypto import associated_data, key_id
    from apps.customer.keys import TABLES
    from apps.customer.sealed import SERVICE, keyring

    conn = op.get_bind()
    ring = keyring()
    for table, columns in TABLES.items():
        rows = conn.execute(sa.text(f"SELECT id, {', '.join(columns)} FROM {table}")).all()
        updates = []
        for row in rows:
            params: dict[str, object] = {"id": row[0]}
            for column, value in zip(columns, row[1:], strict=True):
                sealed = value is not None and key_id(value) is not None
                aad = associated_data(SERVICE, table, column, row[0])
                params[column] = ring.open(value, aad) if sealed else value
            updates.append(params)
        if updates:
            assignments = ", ".join(f"{c} = :{c}" for c in columns)
            conn.execute(sa.text(f"UPDATE {table} SET {assignments} WHERE id = :id"), updates)
