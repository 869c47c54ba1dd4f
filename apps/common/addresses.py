"""The postal address, in the one shape the order and checkout APIs, the customer API's saved addresses
and the checkout.completed event share."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from apps.common.fields import LINE_PATTERN, worded

__all__ = ["Address", "AddressFields"]

Short = Annotated[str, Meta(min_length=1, max_length=255, pattern=LINE_PATTERN)]
Code = Annotated[str, Meta(min_length=1, max_length=20, pattern=LINE_PATTERN)]
Country = Annotated[
    str,
    Meta(
        pattern=worded("^[A-Z]{2}$", "must be an ISO 3166-1 alpha-2 country code in capitals, e.g. US"),
        description="ISO 3166-1 alpha-2",
    ),
]


class Address(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A postal address, copied onto the order as it was when the order was placed."""

    address_line1: Short
    city: Short
    country: Country
    first_name: Short | None = None
    last_name: Short | None = None
    company: Short | None = None
    address_line2: Short | None = None
    state: Short | None = None
    postal_code: Code | None = None
    phone: Code | None = None


class AddressFields(msgspec.Struct, frozen=True, kw_only=True):
    """An address's fields without the request's limits: for what another service or an event already
    holds (an event's schema is a contract, so its address struct derives from this one and keeps its name)."""

    address_line1: str
    city: str
    country: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address_line2: str | None = None
    state: str | None = None
    postal_code: str | None = None
    phone: str | None = None
