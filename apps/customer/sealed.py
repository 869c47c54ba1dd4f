"""Customers' personal data sealed at rest (apps/common/crypto.py): which columns, bound to which row.

The model maps each sealed column to a ``*_sealed`` attribute holding the envelope, so nothing reads a
ciphertext as if it were the value; customer_out and address_out open a row into the API's body.
Sealed: a customer's email, phone and date of birth; every line of an address (names, company, street,
city, state, postal code, phone). In clear: ids, names on the customer row (a follow-up, docs/decisions.md;
events carry them sealed per person, apps/common/personal.py), status, flags, an address's type and
country (a CHECK reads them; neither names a person), timestamps. The email is found through
``email_index``, its blind index.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

from apps.common.crypto import KeyringFile, associated_data, keyring_path
from apps.common.personal import ADDRESS_FIELDS
from apps.customer.schemas import AddressOut, CustomerOut

if TYPE_CHECKING:
    from apps.customer.models import Customer, CustomerAddress

__all__ = [
    "ADDRESS_COLUMNS",
    "CUSTOMER_COLUMNS",
    "address_out",
    "customer_out",
    "email_index",
    "keyring",
    "open_value",
    "seal_address",
    "seal_value",
]

SERVICE: Final = "customer"
CUSTOMER_COLUMNS: Final = ("email", "phone", "date_of_birth")
ADDRESS_COLUMNS: Final = ADDRESS_FIELDS


@functools.cache
def keyring() -> KeyringFile:
    """The customer service's key file, opened on first use (never at import)."""
    path, create = keyring_path(SERVICE)
    return KeyringFile(path, create=create)


def seal_value(table: str, column: str, row_id: object, value: str | None) -> str | None:
    if value is None:
        return None
    return keyring().seal(value, associated_data(SERVICE, table, column, row_id))


def open_value(table: str, column: str, row_id: object, sealed: str | None) -> str | None:
    if sealed is None:
        return None
    return keyring().open(sealed, associated_data(SERVICE, table, column, row_id))


def email_index(email: str) -> bytes:
    """The blind index of an email already normalised by rules.check_email (lower-cased)."""
    return keyring().blind_index(email)


# The opened rows are the API's bodies: the response structs name what may be shown.
def customer_out(customer: Customer) -> CustomerOut:
    email = open_value("customers", "email", customer.id, customer.email_sealed)
    assert email is not None  # NOT NULL column
    return CustomerOut(
        id=customer.id,
        email=email,
        first_name=customer.first_name,
        last_name=customer.last_name,
        phone=open_value("customers", "phone", customer.id, customer.phone_sealed),
        status=customer.status,
        created_at=customer.created_at,
        updated_at=customer.updated_at,
    )


def seal_email(customer: Customer, email: str) -> None:
    customer.email_sealed = keyring().seal(email, associated_data(SERVICE, "customers", "email", customer.id))
    customer.email_index = email_index(email)


def seal_phone(customer: Customer, phone: str | None) -> None:
    customer.phone_sealed = seal_value("customers", "phone", customer.id, phone)


def seal_address(address: CustomerAddress, clear: dict[str, str | None]) -> None:
    """Seal an address's lines onto its row; its id must be known (it is in the associated data)."""
    for column in ADDRESS_COLUMNS:
        setattr(address, f"{column}_sealed", seal_value("customer_addresses", column, address.id, clear[column]))


def address_out(address: CustomerAddress) -> AddressOut:
    opened = {
        column: open_value("customer_addresses", column, address.id, getattr(address, f"{column}_sealed"))
        for column in ADDRESS_COLUMNS
    }
    return AddressOut(
        id=address.id,
        customer_id=address.customer_id,
        type=address.type,
        country=address.country,
        is_default=address.is_default,
        created_at=address.created_at,
        updated_at=address.updated_at,
        **opened,  # type: ignore[arg-type]  # required lines are NOT NULL, so they open to a str
    )
