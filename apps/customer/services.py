"""CustomerService: every customer write changes its rows and adds its event in one transaction, then commits.

The service owns the commit. A commit that fails (the outbox insert refused, the connection lost) raises
to the caller, so the client gets an error and never a "created" for something that was rolled back.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from msgspec import UNSET
from sqlalchemy import cast, select, update
from sqlalchemy.types import String
from uuid_utils.compat import uuid7

from apps.common.models import utc_now
from apps.common.repository import error_messages, get_live, not_found, unique
from apps.customer.events import CustomerRegistered, CustomerUpdated
from apps.customer.models import Customer, CustomerAddress, CustomerStats
from apps.customer.rules import (
    ACTIVE,
    MAX_ADDRESS_LINE_LENGTH,
    MAX_CITY_LENGTH,
    MAX_COMPANY_LENGTH,
    MAX_STATE_LENGTH,
    check_address_type,
    check_country,
    check_email,
    check_name,
    check_optional_text,
    check_phone,
    check_postal_code,
    check_text,
)
from outbox.writer import add_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.customer.schemas import AddressCreate, CustomerCreate, CustomerUpdate

__all__ = ["AddressRepository", "CustomerRepository", "CustomerService"]

# The only unique key a customer write can hit is the email (ids are fresh UUIDv7s, customer_number is
# not written by this API). The email itself stays out of the message: it would land in the logs.
_EMAIL_TAKEN: Final = "a customer with this email already exists"
_ERROR_MESSAGES: Final = error_messages("customer", "customer", duplicate=_EMAIL_TAKEN)


class CustomerRepository(SQLAlchemyAsyncRepository[Customer]):
    """advanced-alchemy repository over the customers table."""

    model_type = Customer


class AddressRepository(SQLAlchemyAsyncRepository[CustomerAddress]):
    """advanced-alchemy repository over the customer_addresses table."""

    model_type = CustomerAddress


class CustomerService:
    """Customers: register, read, change; their addresses; their order stats."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # auto_refresh off: every column is set in Python (models.py), so a re-read after flush is waste.
        self.repository = CustomerRepository(session=session, auto_refresh=False, error_messages=_ERROR_MESSAGES)
        self.addresses = AddressRepository(session=session, auto_refresh=False, error_messages=_ERROR_MESSAGES)

    async def register(self, data: CustomerCreate) -> Customer:
        now = utc_now()
        customer = Customer(
            id=uuid7(),  # time-ordered: new rows land at the end of the primary-key index
            email=check_email(data.email),
            first_name=check_name(data.first_name, field="first_name"),
            last_name=check_name(data.last_name, field="last_name"),
            phone=None if data.phone is None else check_phone(data.phone),
            status=ACTIVE,
            created_at=now,
            updated_at=now,
        )
        with unique("email", _EMAIL_TAKEN, _ERROR_MESSAGES):
            await self.repository.add(customer)  # the flush runs the INSERT
        await add_event(self.session, customer.id, _registered(customer))
        await self.session.commit()
        return customer

    async def get(self, customer_id: uuid.UUID) -> Customer:
        """One primary-key look-up (other services call this to check that a customer exists)."""
        return await get_live(self.repository, customer_id, noun="customer")

    async def update(self, customer_id: uuid.UUID, changes: CustomerUpdate) -> Customer:
        new_values = _checked(changes)  # before any I/O: a bad field costs no lock
        customer = await self._get_for_write(customer_id)
        changed = [field for field, value in new_values.items() if getattr(customer, field) != value]
        if not changed:
            return customer  # nothing to say: no event, and the session closes without a write
        for field in changed:
            setattr(customer, field, new_values[field])
        customer.updated_at = utc_now()
        with unique("email", _EMAIL_TAKEN, _ERROR_MESSAGES):
            await self.session.flush()  # a new email meets the unique constraint here
        await add_event(self.session, customer.id, _updated(customer, changed))
        await self.session.commit()
        return customer

    async def list_addresses(self, customer_id: uuid.UUID) -> Sequence[CustomerAddress]:
        await self.get(customer_id)
        statement = (
            select(CustomerAddress).where(CustomerAddress.customer_id == customer_id).order_by(CustomerAddress.id)
        )
        return await self.addresses.get_many(statement=statement)

    async def add_address(self, customer_id: uuid.UUID, data: AddressCreate) -> CustomerAddress:
        """Add an address; with ``is_default`` it replaces the customer's default of that type.

        No event: addresses are personal data that no consumer needs (see events.py); checkout and
        order read them from this API.
        """
        address = _new_address(customer_id, data)
        # The customer's row lock serialises address writes per customer: two concurrent "default"
        # addresses cannot both clear the old default and then collide on the one-default index.
        await self._get_for_write(customer_id)
        if address.is_default:
            await self.session.execute(
                update(CustomerAddress)
                .where(
                    CustomerAddress.customer_id == customer_id,
                    CustomerAddress.type == address.type,
                    CustomerAddress.is_default.is_(True),
                )
                .values(is_default=False, updated_at=address.updated_at)
            )
        await self.addresses.add(address)
        await self.session.commit()
        return address

    async def get_stats(self, customer_id: uuid.UUID) -> CustomerStats | None:
        """The customer's stats row (None before their first order), in one round trip; 404 if unknown."""
        # customer_stats is keyed by the order's customer_id: VARCHAR(36), a customer's UUID as text.
        statement = (
            select(Customer.id, CustomerStats)
            .outerjoin(CustomerStats, CustomerStats.customer_id == cast(Customer.id, String))
            .where(Customer.id == customer_id, Customer.deleted_at.is_(None))
        )
        row = (await self.session.execute(statement)).one_or_none()
        if row is None:
            raise not_found("customer", customer_id)
        stats: CustomerStats | None = row[1]
        return stats

    async def _get_for_write(self, customer_id: uuid.UUID) -> Customer:
        return await get_live(self.repository, customer_id, noun="customer", for_update=True)


def _checked(changes: CustomerUpdate) -> dict[str, str | None]:
    """The PATCH's fields, each through its rule; absent (UNSET) fields are left out."""
    values: dict[str, str | None] = {}
    if changes.email is not UNSET:
        values["email"] = check_email(changes.email)
    if changes.first_name is not UNSET:
        values["first_name"] = check_name(changes.first_name, field="first_name")
    if changes.last_name is not UNSET:
        values["last_name"] = check_name(changes.last_name, field="last_name")
    if changes.phone is not UNSET:
        values["phone"] = None if changes.phone is None else check_phone(changes.phone)
    return values


def _new_address(customer_id: uuid.UUID, data: AddressCreate) -> CustomerAddress:
    now = utc_now()
    return CustomerAddress(
        customer_id=customer_id,
        type=check_address_type(data.type),
        first_name=None if data.first_name is None else check_name(data.first_name, field="first_name"),
        last_name=None if data.last_name is None else check_name(data.last_name, field="last_name"),
        company=check_optional_text("company", data.company, max_length=MAX_COMPANY_LENGTH),
        address_line1=check_text("address_line1", data.address_line1, max_length=MAX_ADDRESS_LINE_LENGTH),
        address_line2=check_optional_text("address_line2", data.address_line2, max_length=MAX_ADDRESS_LINE_LENGTH),
        city=check_text("city", data.city, max_length=MAX_CITY_LENGTH),
        state=check_optional_text("state", data.state, max_length=MAX_STATE_LENGTH),
        postal_code=check_postal_code(data.postal_code),
        country=check_country(data.country),
        phone=None if data.phone is None else check_phone(data.phone),
        is_default=data.is_default,
        created_at=now,
        updated_at=now,
    )


def _registered(customer: Customer) -> CustomerRegistered:
    # The event's fields are the row's attributes of that name (only the published ones).
    return msgspec.convert(customer, CustomerRegistered, from_attributes=True)


def _updated(customer: Customer, changed: Sequence[str]) -> CustomerUpdated:
    snapshot = msgspec.convert(customer, CustomerUpdated, from_attributes=True)
    return msgspec.structs.replace(snapshot, changed=tuple(changed))
