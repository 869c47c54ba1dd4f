"""Customer tables: the seed's customers and customer_addresses with their indexes.

Departures from the seed (each for a reason given inline): NOT NULL on columns with defaults and on the
names the API requires, emails stored lower-cased (CHECK) so UNIQUE(email) is case-insensitive, CHECKs on
address type and country, an identity column instead of BIGSERIAL, and one default address per type.

Revision ID: customer_0003
Revises: customer_0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "customer_0003"
down_revision = "customer_0002"
branch_labels = None
depends_on = None


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", pg.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()")),
        sa.Column("customer_number", sa.String(50)),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("phone", sa.String(20)),
        # NOT NULL, unlike the seed: registration requires both, and the seed's GDPR anonymisation
        # overwrites them ('Deleted', 'User') rather than clearing them.
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("date_of_birth", sa.Date),
        sa.Column("gender", sa.String(10)),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("phone_verified", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("marketing_consent", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("customer_number", name="uq_customers_customer_number"),
        sa.UniqueConstraint("email", name="uq_customers_email"),
        # The service lower-cases every email (apps/customer/rules.py); with this CHECK the seed's
        # UNIQUE(email) is a case-insensitive guarantee, and the plain (email, status) index serves look-ups.
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_customers_email_lowercase")),
    )
    op.create_index("idx_customers_email_status", "customers", ["email", "status"])
    op.create_table(
        "customer_addresses",
        sa.Column("id", sa.BigInteger, sa.Identity()),
        sa.Column(
            "customer_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("customers.id", name="fk_customer_addresses_customer_id_customers"),
            nullable=False,
        ),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("first_name", sa.String(100)),
        sa.Column("last_name", sa.String(100)),
        sa.Column("company", sa.String(255)),
        sa.Column("address_line1", sa.String(255), nullable=False),
        sa.Column("address_line2", sa.String(255)),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("state", sa.String(100)),
        sa.Column("postal_code", sa.String(20)),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("phone", sa.String(20)),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.text("false")),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_customer_addresses"),
        # The application checks both (apps/customer/rules.py); the database refuses what slips past.
        sa.CheckConstraint("type IN ('shipping', 'billing')", name=op.f("ck_customer_addresses_type_known")),
        sa.CheckConstraint("country ~ '^[A-Z]{2}$'", name=op.f("ck_customer_addresses_country_iso")),
    )
    # The seed's index; it also covers the foreign key's look-ups (customer_id leads).
    op.create_index("idx_customer_addresses_customer_type", "customer_addresses", ["customer_id", "type"])
    # Not in the seed: "the" default shipping (or billing) address must be one row, not a race's outcome.
    op.create_index(
        "uq_customer_addresses_default",
        "customer_addresses",
        ["customer_id", "type"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )


def downgrade() -> None:
    op.drop_table("customer_addresses")
    op.drop_table("customers")
