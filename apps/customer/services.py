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
from sqlalchemy import cast, delete, func, select, update
from sqlalchemy.types import String
from uuid_utils.compat import uuid7

from apps.common.access_log import Touched, log_access, note_read
from apps.common.errors import NotFound, StateConflict
from apps.common.models import utc_now
from apps.common.personal import DataKey, sealed_struct
from apps.common.repository import error_messages, get_live, not_found, unique
from apps.customer.data_keys import data_key_or_none
from apps.customer.events import PERSONAL_FIELDS, CustomerRegistered, CustomerUpdated
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
from apps.customer.schemas import AddressCreate, AddressOut, CustomerOut
from apps.customer.sealed import (
    address_out,
    customer_out,
    seal_address,
    seal_email,
    seal_phone,
)
from outbox.writer import add_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.customer.schemas import AddressUpdate, CustomerCreate, CustomerUpdate

__all__ = ["AddressRepository", "CustomerRepository", "CustomerService"]

# The only unique key a customer write can hit is the email (ids are fresh UUIDv7s, customer_number is
# not written by this API). The email itself stays out of the message: it would land in the logs.
_EMAIL_TAKEN: Final = "a customer with this email already exists"
_ERROR_MESSAGES: Final = error_messages("customer", "customer", duplicate=_EMAIL_TAKEN)
_ADDRESS_ID_SEQUENCE: Final = func.pg_get_serial_sequence("customer_addresses", "id")
# The most addresses a customer keeps. Their listing has no pages (checkout and order read it whole too) and
# opens every sealed field of each: 500 were 196 kB and 50-110 ms of the API's loop per read, and a customer
# at the write limit could add 36,000 an hour (W, session 34).
MAX_ADDRESSES: Final = 100


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

    async def register(self, data: CustomerCreate) -> CustomerOut:
        now = utc_now()
        email = check_email(data.email)
        phone = None if data.phone is None else check_phone(data.phone)
        customer = Customer(
            id=uuid7(),  # time-ordered: new rows land at the end of the primary-key index
            first_name=check_name(data.first_name, field="first_name"),
            last_name=check_name(data.last_name, field="last_name"),
            status=ACTIVE,
            created_at=now,
            updated_at=now,
        )
        seal_email(customer, email)  # after the id: the envelopes are bound to it
        seal_phone(customer, phone)
        with unique("email", _EMAIL_TAKEN, _ERROR_MESSAGES):
            await self.repository.add(customer)  # the flush runs the INSERT; email_index is the unique key
        view = customer_out(customer)  # opens what was just sealed: the round trip is the check
        await log_access(self.session, "customers", "INSERT", [Touched(customer.id, customer.id)])
        key = await data_key_or_none(self.session, str(customer.id))
        await add_event(self.session, customer.id, _registered(view, key))
        await self.session.commit()
        return view

    async def get(self, customer_id: uuid.UUID) -> CustomerOut:
        """One primary-key look-up (other services call this to check that a customer exists)."""
        customer = await get_live(self.repository, customer_id, noun="customer")
        note_read("customers", [Touched(customer.id, customer.id)])
        return customer_out(customer)

    async def update(self, customer_id: uuid.UUID, changes: CustomerUpdate) -> CustomerOut:
        new_values = _checked(changes)  # before any I/O: a bad field costs no lock
        customer = await self._get_for_write(customer_id)
        before = customer_out(customer)
        changed = [field for field, value in new_values.items() if getattr(before, field) != value]
        if not changed:
            return before  # nothing to say: no event, and the session closes without a write
        after = msgspec.structs.replace(before, **{field: new_values[field] for field in changed})
        _write_changes(customer, after, changed)
        customer.updated_at = after.updated_at = utc_now()
        with unique("email", _EMAIL_TAKEN, _ERROR_MESSAGES):
            await self.session.flush()  # a new email meets the unique blind index here
        await log_access(self.session, "customers", "UPDATE", [Touched(customer.id, customer.id)])
        key = await data_key_or_none(self.session, str(customer.id))
        await add_event(self.session, customer.id, _updated(after, changed, key))
        await self.session.commit()
        return after

    async def list_addresses(self, customer_id: uuid.UUID) -> list[AddressOut]:
        await self.get(customer_id)
        statement = (
            select(CustomerAddress).where(CustomerAddress.customer_id == customer_id).order_by(CustomerAddress.id)
        )
        addresses = await self.addresses.get_many(statement=statement)
        note_read("customer_addresses", [Touched(a.id, customer_id) for a in addresses])
        return [address_out(a) for a in addresses]

    async def add_address(self, customer_id: uuid.UUID, data: AddressCreate) -> AddressOut:
        """Add an address; with ``is_default`` it replaces the customer's default of that type.

        No event: addresses are personal data that no consumer needs (see events.py); checkout and
        order read them from this API.
        """
        address, clear = _new_address(customer_id, data)
        # The customer's row lock serialises address writes per customer: two concurrent "default"
        # addresses cannot both clear the old default and then collide on the one-default index.
        await self._get_for_write(customer_id)
        kept = select(func.count()).where(CustomerAddress.customer_id == customer_id)
        if (await self.session.scalar(kept) or 0) >= MAX_ADDRESSES:
            raise StateConflict("customer_id", f"a customer keeps at most {MAX_ADDRESSES} addresses", source="path")
        # The row's id is in its envelopes' associated data, so it is drawn before the INSERT.
        address.id = int(await self.session.scalar(select(func.nextval(_ADDRESS_ID_SEQUENCE))) or 0)
        if address.is_default:
            await self._clear_default(address)
        seal_address(address, clear)
        await self.addresses.add(address)
        await log_access(self.session, "customer_addresses", "INSERT", [Touched(address.id, customer_id)])
        await self.session.commit()
        return address_out(address)

    async def update_address(self, customer_id: uuid.UUID, address_id: int, changes: AddressUpdate) -> AddressOut:
        """Change some fields of one of the customer's addresses: the same rules as a new one, its changed
        lines sealed again; ``is_default`` replaces the default of its (new) type. 404 as delete_address.
        No event, as when one is added; a checkout started with it keeps the copy it took."""
        given = {f: v for f in changes.__struct_fields__ if (v := getattr(changes, f)) is not UNSET}
        await self._get_for_write(customer_id)  # the lock add_address and delete_address take
        address = await self._address(customer_id, address_id)
        before = address_out(address)
        current = msgspec.convert(before, AddressCreate, from_attributes=True)
        changed, clear = _new_address(customer_id, msgspec.structs.replace(current, **given))
        after = msgspec.structs.replace(
            before, **clear, type=changed.type, country=changed.country, is_default=changed.is_default
        )
        if after == before:
            return before  # nothing to write: no access-log row
        changed.id, after.updated_at = address_id, changed.updated_at
        if changed.is_default:  # before this row changes: the session flushes it ahead of the UPDATE
            await self._clear_default(changed)
        address.type, address.country, address.is_default = changed.type, changed.country, changed.is_default
        address.updated_at = changed.updated_at
        seal_address(address, clear)
        await log_access(self.session, "customer_addresses", "UPDATE", [Touched(address_id, customer_id)])
        await self.session.commit()
        return after

    async def delete_address(self, customer_id: uuid.UUID, address_id: int) -> None:
        """Remove one of the customer's addresses for good: the row and its sealed lines go (a hard delete,
        docs/decisions.md "Deleting a saved address"). 404 for an unknown customer or address, or another
        customer's address, alike. No event, as when one is added; a checkout started with it keeps its copy.
        """
        # Under the customer's row lock, as add_address: a delete and an add's count or default swap of
        # the same customer do not interleave.
        await self._get_for_write(customer_id)
        removed = await self.session.scalar(
            delete(CustomerAddress)
            .where(CustomerAddress.id == address_id, CustomerAddress.customer_id == customer_id)
            .returning(CustomerAddress.id)
        )
        if removed is None:
            raise NotFound(f"address {address_id} not found")
        await log_access(self.session, "customer_addresses", "DELETE", [Touched(address_id, customer_id)])
        await self.session.commit()

    async def get_stats(self, customer_id: uuid.UUID) -> list[CustomerStats]:
        """The customer's stats rows, one per currency (none before their first order), in one round trip;
        404 if unknown."""
        # customer_stats is keyed by the order's customer_id: VARCHAR(36), a customer's UUID as text.
        statement = (
            select(Customer.id, CustomerStats)
            .outerjoin(CustomerStats, CustomerStats.customer_id == cast(Customer.id, String))
            .where(Customer.id == customer_id, Customer.deleted_at.is_(None))
        )
        rows = (await self.session.execute(statement)).all()
        if not rows:
            raise not_found("customer", customer_id)
        note_read("customer_stats", [Touched(customer_id, customer_id)])
        return [row[1] for row in rows if row[1] is not None]

    async def _address(self, customer_id: uuid.UUID, address_id: int) -> CustomerAddress:
        """One of the customer's addresses; another customer's is as unknown as a missing one (404)."""
        statement = select(CustomerAddress).where(
            CustomerAddress.id == address_id, CustomerAddress.customer_id == customer_id
        )
        address = await self.session.scalar(statement)
        if address is None:
            raise NotFound(f"address {address_id} not found")
        return address

    async def _clear_default(self, address: CustomerAddress) -> None:
        """The customer's other default of the (new) address's type stops being it; ``address`` is the row as
        it will be, its id known. Under the customer's lock: two concurrent "default" writes cannot both clear
        the old one and then collide on the one-default index."""
        await self.session.execute(
            update(CustomerAddress)
            .where(
                CustomerAddress.customer_id == address.customer_id,
                CustomerAddress.type == address.type,
                CustomerAddress.is_default.is_(True),
                CustomerAddress.id != address.id,
            )
            .values(is_default=False, updated_at=address.updated_at)
        )

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


def _write_changes(customer: Customer, after: CustomerOut, changed: Sequence[str]) -> None:
    for field in changed:
        if field == "email":
            seal_email(customer, after.email)
        elif field == "phone":
            seal_phone(customer, after.phone)
        else:
            setattr(customer, field, getattr(after, field))


def _new_address(customer_id: uuid.UUID, data: AddressCreate) -> tuple[CustomerAddress, dict[str, str | None]]:
    """The address row without its sealed lines, and those lines in clear (seal_address seals them)."""
    now = utc_now()
    address_type = check_address_type(data.type)  # the fields are checked in the body's order, as before
    clear: dict[str, str | None] = dict(
        first_name=None if data.first_name is None else check_name(data.first_name, field="first_name"),
        last_name=None if data.last_name is None else check_name(data.last_name, field="last_name"),
        company=check_optional_text("company", data.company, max_length=MAX_COMPANY_LENGTH),
        address_line1=check_text("address_line1", data.address_line1, max_length=MAX_ADDRESS_LINE_LENGTH),
        address_line2=check_optional_text("address_line2", data.address_line2, max_length=MAX_ADDRESS_LINE_LENGTH),
        city=check_text("city", data.city, max_length=MAX_CITY_LENGTH),
        state=check_optional_text("state", data.state, max_length=MAX_STATE_LENGTH),
        postal_code=check_postal_code(data.postal_code),
    )
    country = check_country(data.country)
    clear["phone"] = None if data.phone is None else check_phone(data.phone)
    address = CustomerAddress(
        customer_id=customer_id,
        type=address_type,
        country=country,
        is_default=data.is_default,
        created_at=now,
        updated_at=now,
    )
    return address, clear


def _registered(customer: CustomerOut, key: DataKey | None) -> CustomerRegistered:
    # The event's fields are the view's attributes of that name (only the published ones), the personal
    # ones sealed with the customer's own data key (apps/common/personal.py).
    return sealed_struct(msgspec.convert(customer, CustomerRegistered, from_attributes=True), key, PERSONAL_FIELDS)


def _updated(customer: CustomerOut, changed: Sequence[str], key: DataKey | None) -> CustomerUpdated:
    snapshot = msgspec.convert(customer, CustomerUpdated, from_attributes=True)
    return sealed_struct(msgspec.structs.replace(snapshot, changed=tuple(changed)), key, PERSONAL_FIELDS)
