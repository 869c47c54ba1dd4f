"""The customer service's tables: the seed's customers and customer_addresses, customer_stats, outbox, inbox."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from apps.common.access_log import DataAccessLogMixin
from apps.common.models import ServiceBase, timestamp


class Base(ServiceBase, bind_key="customer", inbox=True):
    """Every customer table lives on this service's own metadata, next to its outbox tables."""


class CustomerStats(Base):
    """Projection fed by order and return events: one row per customer (or guest) id and currency, so an
    amount is only ever added to amounts in its own currency (migration customer_0013). Rows from before it
    hold currency XXX (their sums' currency was never recorded) until a replay rebuilds them."""

    __tablename__ = "customer_stats"
    __table_args__ = (sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),)

    customer_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    orders_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    cancelled_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Confirmed orders' totals in this currency, net of cancellations and of returns' refunds. The money
    # columns are `spent` and `refunded` (customer_0013 renamed them); the attributes keep the API's names.
    total_spent: Mapped[Decimal] = mapped_column("spent", sa.Numeric(20, 2), default=Decimal("0"))
    last_order_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # Refunded returns (apps/customer/returns.py); total_spent is net of refunded_amount.
    returns_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    refunded_amount: Mapped[Decimal] = mapped_column("refunded", sa.Numeric(20, 2), default=Decimal("0"))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class Customer(Base):
    """The seed's customers (see migrations customer_0003 and customer_0005 for where it departs from the seed).

    Email, phone and date of birth are sealed (apps/customer/sealed.py): their columns keep the seed's
    names and hold envelopes, mapped to ``*_sealed`` attributes. The seed's UNIQUE(email) is
    UNIQUE(email_index), the blind index of the lower-cased email, so it stays case-insensitive.
    Columns with a server default also get a Python default: the INSERT then carries every value and
    nothing is expired after the flush, so no lazy load (impossible under asyncio) is ever needed.
    """

    __tablename__ = "customers"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(
        PG_UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    )
    customer_number: Mapped[str | None] = mapped_column(sa.String(50), unique=True)
    email_sealed: Mapped[str] = mapped_column("email", sa.Text)
    email_index: Mapped[bytes] = mapped_column(sa.LargeBinary, unique=True)
    phone_sealed: Mapped[str | None] = mapped_column("phone", sa.Text)
    first_name: Mapped[str] = mapped_column(sa.String(100))
    last_name: Mapped[str] = mapped_column(sa.String(100))
    date_of_birth_sealed: Mapped[str | None] = mapped_column("date_of_birth", sa.Text)
    gender: Mapped[str | None] = mapped_column(sa.String(10))
    status: Mapped[str] = mapped_column(sa.String(20), default="active", server_default="active")
    email_verified: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.text("false"))
    phone_verified: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.text("false"))
    marketing_consent: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.text("false"))
    # "metadata" is reserved on declarative classes; the column keeps the seed's name.
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=sa.text("'{}'::jsonb")
    )
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()
    deleted_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class CustomerAddress(Base):
    """The seed's customer_addresses: a customer's shipping and billing addresses; every line is sealed
    (``*_sealed``: envelopes bound to the row's id), type and country are in clear."""

    __tablename__ = "customer_addresses"
    __table_args__ = (
        sa.CheckConstraint("type IN ('shipping', 'billing')", name="type_known"),
        sa.CheckConstraint("country ~ '^[A-Z]{2}$'", name="country_iso"),
        sa.Index("idx_customer_addresses_customer_type", "customer_id", "type"),
        # At most one default address per customer and type.
        sa.Index(
            "uq_customer_addresses_default",
            "customer_id",
            "type",
            unique=True,
            postgresql_where=sa.text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), sa.ForeignKey("customers.id"))
    type: Mapped[str] = mapped_column(sa.String(20))
    first_name_sealed: Mapped[str | None] = mapped_column("first_name", sa.Text)
    last_name_sealed: Mapped[str | None] = mapped_column("last_name", sa.Text)
    company_sealed: Mapped[str | None] = mapped_column("company", sa.Text)
    address_line1_sealed: Mapped[str] = mapped_column("address_line1", sa.Text)
    address_line2_sealed: Mapped[str | None] = mapped_column("address_line2", sa.Text)
    city_sealed: Mapped[str] = mapped_column("city", sa.Text)
    state_sealed: Mapped[str | None] = mapped_column("state", sa.Text)
    postal_code_sealed: Mapped[str | None] = mapped_column("postal_code", sa.Text)
    country: Mapped[str] = mapped_column(sa.String(2))
    phone_sealed: Mapped[str | None] = mapped_column("phone", sa.Text)
    is_default: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.text("false"))
    created_at: Mapped[dt.datetime] = timestamp()
    updated_at: Mapped[dt.datetime] = timestamp()


class DataAccessLog(DataAccessLogMixin, Base):
    """Who read or changed a person's record here (the seed's data_access_log; apps/common/access_log.py)."""
