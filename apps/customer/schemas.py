"""Request and response bodies of the customer API.

Shape constraints (lengths, patterns) sit on the fields so that Litestar names the field when they fail
and OpenAPI shows them; the rules themselves (normalising emails and phones, assigned country codes,
blank or control characters) live in rules.py and are applied by the service, for every caller.
Money travels as a decimal string ("19.90").
"""

from __future__ import annotations

# msgspec and Litestar resolve these annotations at runtime: they stay real imports.
import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import msgspec
from litestar.openapi.spec import Schema
from msgspec import UNSET, Meta, UnsetType

from apps.common.fields import LINE_PATTERN, NO_CONTROL_PATTERN
from apps.customer.rules import (
    COUNTRY_PATTERN,
    EMAIL_LOCAL_PART_PATTERN,
    EMAIL_PATTERN,
    MAX_ADDRESS_LINE_LENGTH,
    MAX_CITY_LENGTH,
    MAX_COMPANY_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PHONE_INPUT_LENGTH,
    MAX_POSTAL_CODE_LENGTH,
    MAX_STATE_LENGTH,
    PHONE_PATTERN,
    POSTAL_CODE_PATTERN,
    AddressType,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from apps.customer.models import CustomerStats

__all__ = [
    "AddressCreate",
    "AddressOut",
    "AddressUpdate",
    "CustomerCreate",
    "CustomerOut",
    "CustomerStatsOut",
    "CustomerUpdate",
    "to_stats_out",
]

Email = Annotated[
    str,
    Meta(
        max_length=MAX_EMAIL_LENGTH,
        pattern=EMAIL_PATTERN,
        description="at most 64 characters before '@'; stored and shown lower-cased; unique case-insensitively",
        examples=["ada@example.com"],
        # The local part's limit as a second pattern: the document says what check_email enforces.
        extra_json_schema={"extra": {"all_of": [Schema(pattern=EMAIL_LOCAL_PART_PATTERN)]}},
    ),
]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=LINE_PATTERN, examples=["Ada"])]
Phone = Annotated[
    str,
    Meta(
        max_length=MAX_PHONE_INPUT_LENGTH,
        pattern=PHONE_PATTERN,
        description="7 to 15 digits, optional leading '+'; stored without separators",
        examples=["+44 20 7946 0958"],
    ),
]
# Required lines must hold something besides spaces; optional ones may be blank (stored as NULL). None may
# hold control characters (rules.check_text).
AddressLine = Annotated[str, Meta(min_length=1, max_length=MAX_ADDRESS_LINE_LENGTH, pattern=LINE_PATTERN)]
OptionalLine = Annotated[str, Meta(max_length=MAX_ADDRESS_LINE_LENGTH, pattern=NO_CONTROL_PATTERN)]
City = Annotated[str, Meta(min_length=1, max_length=MAX_CITY_LENGTH, pattern=LINE_PATTERN)]
State = Annotated[str, Meta(max_length=MAX_STATE_LENGTH, pattern=NO_CONTROL_PATTERN)]
Company = Annotated[str, Meta(max_length=MAX_COMPANY_LENGTH, pattern=NO_CONTROL_PATTERN)]
PostalCode = Annotated[str, Meta(max_length=MAX_POSTAL_CODE_LENGTH, pattern=POSTAL_CODE_PATTERN)]
Country = Annotated[
    str, Meta(pattern=COUNTRY_PATTERN, description="an assigned ISO 3166-1 alpha-2 code", examples=["DE"])
]
Money = Annotated[Decimal, Meta(description="decimal string", examples=["149.90"])]


class CustomerCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/customers. Unknown fields are refused, so a misspelt field is a 400, not silently lost."""

    email: Email
    first_name: Name
    last_name: Name
    phone: Phone | None = None


class CustomerUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PATCH /api/customers/{id}: only the fields present change; ``"phone": null`` clears the phone."""

    email: Email | UnsetType = UNSET
    first_name: Name | UnsetType = UNSET
    last_name: Name | UnsetType = UNSET
    phone: Phone | UnsetType | None = UNSET


class CustomerOut(msgspec.Struct, kw_only=True):
    """A customer as the API shows it."""

    id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    phone: str | None
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


class AddressCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/customers/{id}/addresses. ``is_default`` makes it the customer's default of its type."""

    type: AddressType
    address_line1: AddressLine
    address_line2: OptionalLine | None = None
    city: City
    state: State | None = None
    postal_code: PostalCode | None = None
    country: Country
    first_name: Name | None = None
    last_name: Name | None = None
    company: Company | None = None
    phone: Phone | None = None
    is_default: bool = False


class AddressUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PATCH /api/customers/{id}/addresses/{address_id}: only the fields present change; ``null`` clears an
    optional line; ``"is_default": true`` makes it the default of its type (the previous one stops being it)."""

    type: AddressType | UnsetType = UNSET
    address_line1: AddressLine | UnsetType = UNSET
    address_line2: OptionalLine | UnsetType | None = UNSET
    city: City | UnsetType = UNSET
    state: State | UnsetType | None = UNSET
    postal_code: PostalCode | UnsetType | None = UNSET
    country: Country | UnsetType = UNSET
    first_name: Name | UnsetType | None = UNSET
    last_name: Name | UnsetType | None = UNSET
    company: Company | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    is_default: bool | UnsetType = UNSET


class AddressOut(msgspec.Struct, kw_only=True):
    """One of a customer's addresses."""

    id: int
    customer_id: uuid.UUID
    type: str
    first_name: str | None
    last_name: str | None
    company: str | None
    address_line1: str
    address_line2: str | None
    city: str
    state: str | None
    postal_code: str | None
    country: str
    phone: str | None
    is_default: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class CurrencyStatsOut(msgspec.Struct, kw_only=True):
    """A customer's orders and money in one currency: amounts are never added across currencies."""

    currency: Annotated[
        str,
        Meta(
            description="the orders' ISO 4217 code; XXX holds what was counted before the stats kept a currency "
            "(customer_0013), until a replay of customer-stats rebuilds it in its currencies",
            examples=["USD"],
        ),
    ]
    orders_count: int
    cancelled_count: int
    total_spent: Annotated[
        Money, Meta(description="confirmed orders' totals in this currency, net of cancellations and refunds")
    ]
    last_order_at: dt.datetime | None
    returns_count: int
    refunded_amount: Annotated[Money, Meta(description="returns' refunds in this currency")]


class CustomerStatsOut(msgspec.Struct, kw_only=True):
    """A customer's order numbers, from the customer_stats projection (eventually consistent with orders): the
    counts over every currency, and the money per currency (``by_currency``, by code; empty before the first
    order). Since API 0.2.0: ``total_spent`` and ``refunded_amount`` moved into ``by_currency``."""

    orders_count: int
    cancelled_count: int
    last_order_at: dt.datetime | None
    returns_count: int
    by_currency: list[CurrencyStatsOut]


def to_stats_out(rows: Sequence[CustomerStats]) -> CustomerStatsOut:
    """One customer's rows (one per currency, none before their first order) as the answer."""
    by_currency = [
        msgspec.convert(row, CurrencyStatsOut, from_attributes=True)
        for row in sorted(rows, key=lambda row: row.currency)
    ]
    last_orders = [row.last_order_at for row in rows if row.last_order_at is not None]
    return CustomerStatsOut(
        orders_count=sum(row.orders_count for row in rows),
        cancelled_count=sum(row.cancelled_count for row in rows),
        last_order_at=max(last_orders, default=None),
        returns_count=sum(row.returns_count for row in rows),
        by_currency=by_currency,
    )
