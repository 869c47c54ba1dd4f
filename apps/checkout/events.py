"""Events the checkout service publishes (topic commerce.checkout, key = checkout session id)."""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import uuid
from decimal import Decimal

from apps.common.addresses import AddressFields
from apps.common.personal import ADDRESS_FIELDS, DataKey, opened_struct, sealed_struct
from apps.common.pricing import PricedLine
from outbox.events import Event, event


class CheckoutLine(PricedLine, frozen=True, kw_only=True):
    """One line as the checkout session priced it: the order copies it as is."""


class CheckoutAddress(AddressFields, frozen=True, kw_only=True):
    """A postal address in the order API's shape, as it was when the checkout completed."""


@event("checkout.completed", version=1, aggregate="checkout")
class CheckoutCompletedV1(Event, frozen=True, kw_only=True):
    """A buyer completed a checkout: everything the order service needs to create the order.

    ``customer_id`` is the seed's orders.customer_id: the customer's id, or for a guest the cart's
    session id (``cs_`` + 32 hex characters, never a UUID); ``is_guest`` says which. ``order_id`` is
    allocated here, so creating the order from a redelivered event is idempotent by primary key.
    The payment method is the provider's token reference, never a card number.
    """

    checkout_id: uuid.UUID
    order_id: uuid.UUID
    cart_id: uuid.UUID
    customer_id: str
    is_guest: bool
    currency: str
    lines: list[CheckoutLine]
    shipping_address: CheckoutAddress
    billing_address: CheckoutAddress
    shipping_method_id: str
    shipping_method_name: str
    payment_method_type: str
    payment_method_id: str
    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    discount_amount: Decimal
    total_amount: Decimal
    completed_at: dt.datetime


@event("checkout.completed", version=2, aggregate="checkout", min_reader_version=2)
class CheckoutCompleted(CheckoutCompletedV1, frozen=True, kw_only=True):
    """v2: the same fields, with every line of both addresses but the country sealed with the buyer's data
    key (``pd1:...``, apps/common/personal.py; the subject is ``customer_id``, a guest's ``cs_...`` id
    included; field names ``shipping_address.city`` etc.). Consumers open them with that key
    (apps/common/data_keys.py); once it is destroyed (erasure) they read ``[erased]``. A v1 reader would keep
    the sealed text as the address: min_reader_version=2."""


def personal_address(address: CheckoutAddress, key: DataKey | None, prefix: str, *, seal: bool) -> CheckoutAddress:
    """``address`` with its personal lines sealed (``seal``) or opened with ``key`` (None: destroyed)."""
    change = sealed_struct if seal else opened_struct
    return change(address, key, ADDRESS_FIELDS, prefix)
