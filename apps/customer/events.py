"""Events the customer service publishes (topic commerce.customer, key = customer id).

Personal data is kept to what consumers need to recognise and address a customer: id, email, first and
last name. Phone, date of birth, gender and addresses never enter an event: Kafka keeps events for a year
and every consumer copies them. Consumers that need more ask the API (GET /api/customers/{id}, /addresses).
From version 2 on, email, first_name and last_name are personal-data envelopes sealed with the customer's
own data key (``pd1:...``, apps/common/personal.py): the erasure destroys that key, and every copy of
these fields, in Kafka and in any consumer's store, stops opening. Version 1 messages (clear values)
remain in the topics until retention removes them.

customer.updated carries the same fields' state after the change rather than a diff, so a consumer can
build its projection from any single event, and a replay or a redelivery converges on the same state.
"""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import uuid

from outbox.events import Event, event

__all__ = [
    "PERSONAL_FIELDS",
    "CustomerErased",
    "CustomerRegistered",
    "CustomerRegisteredV1",
    "CustomerUpdated",
    "CustomerUpdatedV1",
]

# Sealed per person from version 2 on (the field names are the envelopes' associated data).
PERSONAL_FIELDS = ("email", "first_name", "last_name")


class _CustomerState(Event, frozen=True, kw_only=True):
    # The customer's published fields, first in both payloads (not an event of its own).
    id: uuid.UUID
    email: str  # lower-cased: unique per customer, case-insensitively
    first_name: str
    last_name: str


@event("customer.registered", version=1, aggregate="customer")
class CustomerRegisteredV1(_CustomerState, frozen=True, kw_only=True):
    """A customer registered."""

    created_at: dt.datetime


@event("customer.updated", version=1, aggregate="customer")
class CustomerUpdatedV1(_CustomerState, frozen=True, kw_only=True):
    """A customer changed; the payload is the published fields' state after the change."""

    status: str
    # Which fields this change touched, e.g. ["email"]. It may name a field that is not published
    # (a phone change reads ["phone"]): consumers learn that something changed, never the value.
    changed: tuple[str, ...] = ()
    updated_at: dt.datetime


@event("customer.registered", version=2, aggregate="customer", min_reader_version=2)
class CustomerRegistered(CustomerRegisteredV1, frozen=True, kw_only=True):
    """v2: the same fields, with email, first_name and last_name sealed with the customer's data key (a v1
    reader would keep the sealed text as the value: min_reader_version=2)."""


@event("customer.updated", version=2, aggregate="customer", min_reader_version=2)
class CustomerUpdated(CustomerUpdatedV1, frozen=True, kw_only=True):
    """v2: the same fields, with email, first_name and last_name sealed with the customer's data key
    (``[erased]`` once the key is destroyed; a v1 reader would keep the sealed text: min_reader_version=2)."""


@event("customer.erased", version=1, aggregate="customer")
class CustomerErased(Event, frozen=True, kw_only=True):
    """A customer was erased (GDPR): every service anonymises its copies of their personal data.

    Only the id travels: the event exists to say whose data to forget (apps/customer/erasure.py). Orders,
    payments and totals stay; the customer's data key is destroyed in the same transaction, so their
    sealed values in earlier events no longer open anywhere.
    """

    id: uuid.UUID
    erased_at: dt.datetime
