"""An order just placed through the API, as ``_PLACE`` (apps/order/transitions.py) writes it: plain objects
under the ORM classes' attribute names, for the statement's parameters, the event and the answer.

The ORM's transient ``Order`` and ``OrderSaga`` cost 74-90 us of CPU per order to build and read
(instrumented constructors, attribute events); nothing tracks these rows in a session, so nothing needs
them: the placement writes them in one statement of its own. Rows read back are ORM objects as before.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from apps.common.pricing import ZERO
from apps.order.saga_state import DONE, RESERVATION, step_timeout

__all__ = ["PlacedItem", "PlacedOrder", "PlacedSaga"]


@dataclass(slots=True)
class PlacedOrder:
    """An ``orders`` row about to be written (``Order``'s attributes; the addresses sealed in place)."""

    id: uuid.UUID
    order_number: str
    customer_id: str
    status: str
    payment_status: str
    currency: str
    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    discount_amount: Decimal
    total_amount: Decimal
    shipping_address: dict[str, Any] | str | None
    billing_address: dict[str, Any] | str | None
    notes: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    source_service: str
    metadata_: dict[str, Any] = field(default_factory=dict)
    payment_id: str | None = None
    payment_method: str | None = None
    cancelled_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None


@dataclass(slots=True)
class PlacedSaga:
    """An ``order_sagas`` row as an order is placed: waiting on the warehouse's reservation (what
    ``saga_state.enter(saga, RESERVATION, now)`` sets on an ``OrderSaga``)."""

    order_id: uuid.UUID
    created_at: dt.datetime
    step: str
    deadline_at: dt.datetime | None
    updated_at: dt.datetime
    checkout_id: uuid.UUID | None = None
    reason: str | None = None
    payment_method_type: str | None = None
    payment_token: str | None = None
    payment_attempts: int = 0
    payment_requested_at: dt.datetime | None = None
    payment_cancel_requested_at: dt.datetime | None = None

    @classmethod
    def awaiting_reservation(cls, order_id: uuid.UUID, now: dt.datetime) -> PlacedSaga:
        """Its ``deadline_at`` is this process's estimate until the placement returns the one it wrote (the
        database's clock: apps/order/transitions.py placement_ctes)."""
        return cls(order_id, now, RESERVATION, now + step_timeout(RESERVATION), now)

    @property
    def waiting_on(self) -> str | None:
        return None if self.step == DONE else self.step


@dataclass(frozen=True, slots=True)
class PlacedItem:
    """A line as ``_PLACE`` wrote it, under OrderItem's attribute names, for the answer: a transient ORM
    object cost ~40 us of CPU to build (instrumented constructor and attributes), per line of every order."""

    id: int
    order_id: uuid.UUID
    product_id: uuid.UUID
    product_sku: str
    product_name: str
    quantity: int
    unit_price: Decimal
    total_price: Decimal
    discount_amount: Decimal = ZERO
    tax_amount: Decimal = ZERO
