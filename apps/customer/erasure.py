"""GDPR erasure of a customer (POST /api/customers/{id}/erase), in customer_db, in one transaction.

The seed's anonymisation: email 'anonymized_<id>@deleted.com' (sealed like any email, with the blind
index of that address, so UNIQUE(email_index) and the NOT NULL columns stay as they are), phone, date of
birth and gender NULL, names 'Deleted' / 'User', metadata emptied, consents and verifications off; every
line of the customer's addresses cleared (NULL, or the placeholder 'erased' where the column is NOT NULL;
type and country stay). The row keeps its id and becomes status 'erased' with ``deleted_at`` set: the API
then answers 404 for it like for any deleted customer (so does every service that asks), while
customer_stats and other services' orders and payments stay, keyed by an id that names nobody.

In the same transaction: customer.erased in the outbox (each service that holds a copy anonymises it,
see docs/operations.md "Erasing a person") and the customer's data key destroyed, so whatever was sealed
with it (their fields in a year of Kafka events, event stores, dead letters) no longer opens.
A second erase finds status 'erased' and answers the same without writing anything.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Final

import msgspec
from sqlalchemy import select

from apps.common.access_log import Touched, log_access
from apps.common.models import utc_now
from apps.common.repository import not_found
from apps.customer.data_keys import destroy_data_key
from apps.customer.events import CustomerErased
from apps.customer.models import Customer, CustomerAddress
from apps.customer.sealed import ADDRESS_COLUMNS, seal_address, seal_email, seal_phone
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "ERASED",
    "CustomerErasure",
    "ErasureOut",
    "anonymised_address_lines",
    "anonymised_email",
]

ERASED: Final = "erased"
ERASED_FIRST_NAME: Final = "Deleted"
ERASED_LAST_NAME: Final = "User"
# What a NOT NULL address line holds once erased (sealed like any line; it names nobody).
ADDRESS_PLACEHOLDER: Final = "erased"
_REQUIRED_ADDRESS_LINES: Final = frozenset({"address_line1", "city"})


class ErasureOut(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of an erase, the same for the first call and every repeat."""

    id: uuid.UUID
    status: str
    erased_at: dt.datetime


def anonymised_email(customer_id: uuid.UUID) -> str:
    """The seed's replacement address: unique per customer, so the unique blind index still holds."""
    return f"anonymized_{customer_id}@deleted.com"


def anonymised_address_lines() -> dict[str, str | None]:
    """Every sealed line of an address once erased: NULL, the placeholder where the column is NOT NULL."""
    return {column: ADDRESS_PLACEHOLDER if column in _REQUIRED_ADDRESS_LINES else None for column in ADDRESS_COLUMNS}


def anonymise_customer(customer: Customer, now: dt.datetime) -> None:
    """The seed's anonymisation of the customer row (in memory; the caller flushes)."""
    seal_email(customer, anonymised_email(customer.id))
    seal_phone(customer, None)
    customer.date_of_birth_sealed = None
    customer.first_name = ERASED_FIRST_NAME
    customer.last_name = ERASED_LAST_NAME
    customer.gender = None
    customer.customer_number = None
    customer.metadata_ = {}
    customer.email_verified = customer.phone_verified = customer.marketing_consent = False
    customer.status = ERASED
    customer.deleted_at = customer.updated_at = now


class CustomerErasure:
    """Erase one customer: anonymise, announce, destroy their data key; then commit."""

    def __init__(self, session: AsyncSession, *, actor: str | None = None) -> None:
        self.session = session
        self.actor = actor  # who erases, for data_access_log; None: the request's caller

    async def erase(self, customer_id: uuid.UUID, *, announce_again: bool = False) -> ErasureOut:
        """Erase the customer; a repeat writes and sends nothing, unless ``announce_again`` (operators:
        apps/customer/reerase.py --announce), which publishes customer.erased once more so every service
        applies it again (a copy made after the first one, a consumer that lost it)."""
        # Locked: two concurrent erases of one customer serialise, and the second sees 'erased'.
        customer = await self.session.scalar(select(Customer).where(Customer.id == customer_id).with_for_update())
        if customer is None:
            raise not_found("customer", customer_id)
        if customer.status == ERASED and customer.deleted_at is not None:
            if announce_again:
                await add_event(
                    self.session, customer.id, CustomerErased(id=customer.id, erased_at=customer.deleted_at)
                )
                await self.session.commit()
            return _answer(customer.id, customer.deleted_at)  # done before: nothing new is written
        now = utc_now()
        anonymise_customer(customer, now)
        addresses = await self._clear_addresses(customer_id, now)
        await self.session.flush()
        touched = [Touched(a, customer.id) for a in addresses]
        await log_access(self.session, "customers", "UPDATE", [Touched(customer.id, customer.id)], actor=self.actor)
        await log_access(self.session, "customer_addresses", "UPDATE", touched, actor=self.actor)
        await add_event(self.session, customer.id, CustomerErased(id=customer.id, erased_at=now))
        await destroy_data_key(self.session, str(customer.id))
        await self.session.commit()
        return _answer(customer.id, now)

    async def _clear_addresses(self, customer_id: uuid.UUID, now: dt.datetime) -> list[int]:
        """Every address of the customer anonymised (in memory; flushed with the customer): their ids."""
        addresses = await self.session.scalars(
            select(CustomerAddress).where(CustomerAddress.customer_id == customer_id).with_for_update()
        )
        lines = anonymised_address_lines()
        cleared = []
        for address in addresses:
            seal_address(address, lines)
            address.is_default = False
            address.updated_at = now
            cleared.append(address.id)
        return cleared


def _answer(customer_id: uuid.UUID, erased_at: dt.datetime) -> ErasureOut:
    return ErasureOut(id=customer_id, status=ERASED, erased_at=erased_at)
