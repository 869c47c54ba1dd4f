"""The checkout service's calls to the catalog (prices) and the customer service (customers, saved
addresses), over apps.common.service_client: short timeouts, a 503 naming the dependency when it fails."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import msgspec
from litestar import Litestar

from apps.checkout.rules import CatalogPrice
from apps.common.service_client import ServiceClient, open_service_client

TIMEOUT_S = float(os.environ.get("CHECKOUT_DEPENDENCY_TIMEOUT_S", "2.0"))


class _ValidProduct(msgspec.Struct):
    id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str


class _Validated(msgspec.Struct):
    valid: list[_ValidProduct]
    invalid: list[uuid.UUID]


class SavedAddress(msgspec.Struct, kw_only=True):
    """One of a customer's addresses, as the customer API returns it (its other fields are ignored)."""

    id: int
    type: str
    address_line1: str
    city: str
    country: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address_line2: str | None = None
    state: str | None = None
    postal_code: str | None = None
    phone: str | None = None


@dataclass
class Dependencies:
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
        status, content = await self.customers.get(f"/api/customers/{customer_id}")
        if status == 404:
            return False
        self.customers.decode(status, content, dict)
        return True

    async def addresses(self, customer_id: str) -> list[SavedAddress] | None:
        """The customer's saved addresses (the seed's GetCustomerAddresses); None for an unknown customer."""
        status, content = await self.customers.get(f"/api/customers/{customer_id}/addresses")
        if status == 404:
            return None
        return self.customers.decode(status, content, list[SavedAddress])


@asynccontextmanager
async def dependencies_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open the sessions when the app starts, close them when it stops."""
    async with AsyncExitStack() as stack:
        catalog = await stack.enter_async_context(open_service_client("catalog", timeout_s=TIMEOUT_S))
        customers = await stack.enter_async_context(open_service_client("customer", timeout_s=TIMEOUT_S))
        app.state.dependencies = Dependencies(ServiceClient("catalog", catalog), ServiceClient("customer", customers))
        yield
        await asyncio.sleep(0)  # let aiohttp finish closing transports before the loop stops
