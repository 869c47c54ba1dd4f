"""Orders from completed checkouts (checkout.completed): created pending, with the saga waiting on stock.

The event carries everything (lines priced by the checkout, addresses, totals, the provider's token) and
the order id the checkout allocated, so a redelivered event finds its order and creates nothing twice;
the checkout id is unique on order_sagas as well. Guest orders are accepted without a customer lookup:
``is_guest`` says so (``customer_id`` is then the cart's ``cs_...`` session id) and is kept in metadata.

A registered customer's order is accepted too (the checkout service vouched for them), but written without
their addresses once the order service has applied their erasure (customer.erased in order-references:
apps/order/erasure.py), and the known-customer row it read stays locked until the saga's batch commits
(apps/order/known.py ``hold_customer``): an erasure applied meanwhile waits for that commit, so its UPDATEs
clear what the order wrote. Before (session 32), the order's INSERT committed with the batch, after an
erasure whose UPDATEs had not seen it, and kept the addresses; so did one opened with the buyer's data key
cached in this process (30 s) after the erasure had been applied here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from apps.checkout.events import personal_address
from apps.common.data_keys import consumer_data_keys
from apps.common.personal import ADDRESS_FIELDS, subjects_of
from apps.order.known import hold_customer
from apps.order.models import Order
from apps.order.rules import PENDING, SAGA, order_number
from apps.order.saga_state import OrderSaga
from apps.order.sealed import seal_addresses
from apps.order.transitions import add_pending_order, amounts

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.checkout.events import CheckoutAddress, CheckoutCompleted

CHECKOUT_SERVICE = "checkout-service"
_COLUMNS = ("shipping_address", "billing_address")


async def create_from_checkout(session: AsyncSession, event: CheckoutCompleted) -> bool:
    """Create the checkout's order, its saga row and order.created; False if it exists already."""
    if await session.get(Order, event.order_id) is not None:
        return False
    personal = event.is_guest or await hold_customer(session, event.customer_id)
    shipping, billing = await _opened_addresses(event) if personal else (None, None)
    now = dt.datetime.now(dt.UTC)
    order = Order(
        id=event.order_id,
        order_number=order_number(event.order_id, now),
        customer_id=event.customer_id,
        status=PENDING,
        payment_method=event.payment_method_type[:50],
        payment_status="pending",
        shipping_address=msgspec.to_builtins(shipping),
        billing_address=msgspec.to_builtins(billing),
        metadata_={
            "checkout_id": str(event.checkout_id),
            "cart_id": str(event.cart_id),
            "is_guest": event.is_guest,
            "shipping_method_id": event.shipping_method_id,
        },
        created_at=now,
        updated_at=now,
        source_service=CHECKOUT_SERVICE,
        **amounts(event),
    )
    seal_addresses(order)  # at rest under the order service's own keyring
    saga = OrderSaga(
        order_id=order.id,
        checkout_id=event.checkout_id,
        payment_method_type=event.payment_method_type[:50],
        payment_token=event.payment_method_id,
        payment_attempts=0,
        created_at=now,
    )
    await add_pending_order(session, order, event.lines, saga, changed_by=SAGA, reason="checkout completed")
    return True


async def ask_buyers_keys(events: Sequence[CheckoutCompleted]) -> None:
    """The order-saga's ``prepare`` for checkout.completed (outbox.consumer.ConsumerGroup.prepare): the
    buyers' data keys asked for before the batch's transaction opens, so that ``create_from_checkout``
    finds them in the process's 30 s cache (apps/common/data_keys.py) and makes no call while the batch
    holds its inbox claims and the rows its earlier events locked (a slow customer service held them for
    up to its 2 s timeout)."""
    subjects = {event.customer_id for event in events if _sealed(event)}
    if subjects:
        keys = await consumer_data_keys()
        await asyncio.gather(*(keys.for_opening(subject) for subject in subjects))


async def _opened_addresses(event: CheckoutCompleted) -> tuple[CheckoutAddress, CheckoutAddress]:
    """The event's addresses in clear: v2 seals them with the buyer's data key (the customer service
    hands it out; asked before the transaction, ``ask_buyers_keys``); a destroyed key (the buyer was
    erased) leaves ``[erased]`` in each sealed line, and the order is created all the same. v1 events
    carry them in clear."""
    addresses = (event.shipping_address, event.billing_address)
    if not _sealed(event):
        return addresses
    key = await (await consumer_data_keys()).for_opening(event.customer_id)
    shipping, billing = (
        personal_address(a, key, f"{c}.", seal=False) for a, c in zip(addresses, _COLUMNS, strict=True)
    )
    return shipping, billing


def _sealed(event: CheckoutCompleted) -> bool:
    addresses = (event.shipping_address, event.billing_address)
    return bool(subjects_of(getattr(a, f) for a in addresses for f in ADDRESS_FIELDS))
