"""The calls to the catalog and the customer service that several services make (order, checkout):
today's price of the products asked for, whether a customer exists; and the lifespan that opens a service's
clients (the warehouse's to the catalog too). Over apps.common.service_client: short timeouts, and a 503
naming the dependency when it fails.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import msgspec
from litestar import Litestar

from apps.common.pricing import CatalogPrice
from apps.common.service_client import ServiceClient, open_service_client

__all__ = ["CatalogAndCustomers", "catalog_and_customers_lifespan", "service_clients_lifespan"]


class _ValidProduct(msgspec.Struct):
    id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str


class _Validated(msgspec.Struct):
    valid: list[_ValidProduct]
    invalid: list[uuid.UUID]


@dataclass
class CatalogAndCustomers:
    """The catalog and customer clients of a service that sells; a service adds its own calls in a subclass."""

    catalog: ServiceClient
    customers: ServiceClient

    async def prices(self, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, CatalogPrice]:
        """Sellable products among ``product_ids`` at today's price (the seed's ValidateProducts)."""
        if not product_ids:
            return {}
        status, content = await self.catalog.post_json("/api/products/validate", {"product_ids": product_ids})
        validated = self.catalog.decode(status, content, _Validated)
        return {p.id: CatalogPrice(p.id, p.sku, p.name, p.price, p.currency) for p in validated.valid}

    async def customer_exists(self, customer_id: uuid.UUID) -> bool:
        return await self.customers.exists(f"/api/customers/{customer_id}")


def service_clients_lifespan(
    make: Callable[..., object], services: Sequence[str], timeout_s: float | Callable[[], float]
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan that opens one pooled session per service when the app starts, sets
    ``app.state.dependencies`` to ``make(*clients)`` (a ServiceClient per service, in that order), and closes
    them when it stops (no I/O at import time). ``timeout_s`` may be a function, asked at start (a service's
    settings, read then)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        timeout = timeout_s() if callable(timeout_s) else timeout_s
        async with AsyncExitStack() as stack:
            caller = app.state.service  # its own token on every call (apps/common/auth_service.py)
            clients = [
                ServiceClient(
                    name,
                    await stack.enter_async_context(open_service_client(name, timeout_s=timeout)),
                    caller=caller,
                )
                for name in services
            ]
            app.state.dependencies = make(*clients)
            yield
            await asyncio.sleep(0)  # let aiohttp finish closing transports before the loop stops

    return lifespan


def catalog_and_customers_lifespan(
    make: Callable[[ServiceClient, ServiceClient], CatalogAndCustomers], timeout_s: float | Callable[[], float]
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """:func:`service_clients_lifespan` with ``make(catalog, customers)``."""
    return service_clients_lifespan(make, ("catalog", "customer"), timeout_s)
