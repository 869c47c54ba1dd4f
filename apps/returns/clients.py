"""The returns service's calls: to the order service, an order's lines, amounts and status (the fallback and
the once-per-order source of the lines; see OrderSnapshot); to the payment service, the order's payment
ledger, when staff name refunds made by hand to settle a return (retry-refund's settle_with); to the
customer service, whether the buyer was erased, when a return brings free text. Over
apps.common.service_client: a short timeout, and a 503 naming the service when it fails."""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal

import msgspec
from litestar import Litestar

from apps.common.data_keys import PATH as DATA_KEYS_PATH
from apps.common.service_client import ServiceClient, open_service_client
from apps.returns.settings import settings

__all__ = [
    "CustomerClient",
    "OrderClient",
    "OrderLineView",
    "OrderView",
    "PaymentClient",
    "PaymentOperationView",
    "PaymentView",
    "customers_lifespan",
    "orders_lifespan",
    "payments_lifespan",
]


class OrderLineView(msgspec.Struct, kw_only=True):
    id: int
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


class OrderView(msgspec.Struct, kw_only=True):
    """GET /api/orders/{id}, the fields a return needs (the others are ignored)."""

    id: uuid.UUID
    customer_id: str
    status: str
    payment_status: str
    currency: str
    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    discount_amount: Decimal
    items: list[OrderLineView]
    updated_at: dt.datetime


class OrderClient:
    def __init__(self, orders: ServiceClient) -> None:
        self.orders = orders

    async def order(self, order_id: uuid.UUID, customer_id: uuid.UUID | None = None) -> OrderView | None:
        """The order, or None when the order service does not know it (with ``customer_id``: or it is
        another customer's, answered as an unknown one)."""
        owned = "" if customer_id is None else f"?customer_id={customer_id}"
        status, content = await self.orders.get(f"/api/orders/{order_id}{owned}")
        if status == 404:
            return None
        return self.orders.decode(status, content, OrderView)


class PaymentOperationView(msgspec.Struct, kw_only=True):
    """One operation of GET /api/payments?order_id=...'s ledger, the fields settle_with is checked on."""

    id: uuid.UUID
    kind: str
    amount: Decimal
    outcome: str
    by_hand: bool
    counted_for_returns: Decimal


class PaymentView(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: str
    operations: list[PaymentOperationView]


class PaymentClient:
    def __init__(self, payments: ServiceClient) -> None:
        self.payments = payments

    async def of_order(self, order_id: uuid.UUID) -> list[PaymentView]:
        """The order's payments with their ledgers, oldest first."""
        status, content = await self.payments.get(f"/api/payments?order_id={order_id}")
        return self.payments.decode(status, content, list[PaymentView])


class CustomerClient:
    def __init__(self, customers: ServiceClient) -> None:
        self.customers = customers

    async def erased(self, subject: str) -> bool:
        """Whether the person (a customer, or a guest's ``cs_...``) was erased: their data key's route answers
        410 from the erasure on (its tombstone), for every erased person. 404: no key was ever made (a
        customer from before per-person keys), not an erasure. The key a 200 brings is not kept."""
        status, content = await self.customers.get(DATA_KEYS_PATH + subject)
        if status == 410:
            return True
        if status != 404:
            self.customers.decode(status, content, dict)  # a 200, or the service is not working: 503
        return False


def _client_lifespan(
    state_key: str, service: str, wrap: Callable[[ServiceClient], object], pool_size: int = 64
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan opening one pooled session to ``service`` when the app starts (no I/O at import time) and
    setting ``app.state.<state_key>`` to ``wrap(client)``; closed when the app stops."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_service_client(
            service, timeout_s=settings().dependency_timeout_s, pool_size=pool_size
        ) as session:
            setattr(app.state, state_key, wrap(ServiceClient(service, session)))
            yield

    return lifespan


orders_lifespan = _client_lifespan("orders", "order", OrderClient)
# Read only when staff settle a return by hand.
payments_lifespan = _client_lifespan("payments", "payment", PaymentClient, pool_size=4)
# Asked only when a return brings a description.
customers_lifespan = _client_lifespan("customers", "customer", CustomerClient, pool_size=4)
