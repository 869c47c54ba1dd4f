"""The order service's calls to the customer and catalog services: short timeouts, clear failures.

One pooled aiohttp session per dependency, opened in the app's lifespan (aiohttp rather than httpx:
on the order hot path httpx's connection pool cost a quarter of the service's CPU under load). A
dependency that does not answer in time, refuses the connection or fails with a 5xx becomes
DependencyUnavailable, which the API answers with a 503 naming it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import msgspec
from litestar import Litestar

from apps.common.errors import DependencyUnavailable
from apps.common.topology import BY_NAME
from apps.order.rules import CatalogPrice

TIMEOUT = aiohttp.ClientTimeout(total=float(os.environ.get("ORDER_DEPENDENCY_TIMEOUT_S", "2.0")), sock_connect=1.0)
POOL_SIZE = 64
JSON = {"Content-Type": "application/json"}


def _base_url(service: str) -> str:
    return os.environ.get(f"{service.upper()}_URL", f"http://127.0.0.1:{BY_NAME[service].port}")


class _ValidProduct(msgspec.Struct):
    id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str


class _Validated(msgspec.Struct):
    valid: list[_ValidProduct]
    invalid: list[uuid.UUID]


_validated = msgspec.json.Decoder(_Validated)


@dataclass
class Dependencies:
    """The HTTP sessions of the services an order depends on."""

    customers: aiohttp.ClientSession
    catalog: aiohttp.ClientSession

    async def customer_exists(self, customer_id: uuid.UUID) -> bool:
        status, _ = await self._call("customer", self.customers.get(f"/api/customers/{customer_id}"))
        if status == 404:
            return False
        self._require_ok("customer", status)
        return True

    async def prices(self, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, CatalogPrice]:
        """Sellable products among ``product_ids`` with their current price (the seed's ValidateProducts)."""
        body = msgspec.json.encode({"product_ids": product_ids})
        status, content = await self._call(
            "catalog", self.catalog.post("/api/products/validate", data=body, headers=JSON)
        )
        self._require_ok("catalog", status)
        try:
            validated = _validated.decode(content)
        except msgspec.DecodeError as exc:
            raise DependencyUnavailable("catalog", f"unexpected answer: {exc}") from exc
        return {p.id: CatalogPrice(p.id, p.sku, p.name, p.price, p.currency) for p in validated.valid}

    @staticmethod
    async def _call(name: str, request: AbstractAsyncContextManager[aiohttp.ClientResponse]) -> tuple[int, bytes]:
        try:
            async with request as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise DependencyUnavailable(name, "timed out") from exc
        except aiohttp.ClientError as exc:
            raise DependencyUnavailable(name, f"unreachable ({type(exc).__name__})") from exc

    @staticmethod
    def _require_ok(name: str, status: int) -> None:
        if status != 200:
            raise DependencyUnavailable(name, f"answered {status}")


def _session(service: str) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=30)
    return aiohttp.ClientSession(base_url=_base_url(service), timeout=TIMEOUT, connector=connector)


@asynccontextmanager
async def dependencies_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open the sessions when the app starts, close them when it stops (no I/O at import time)."""
    async with AsyncExitStack() as stack:
        customers = await stack.enter_async_context(_session("customer"))
        catalog = await stack.enter_async_context(_session("catalog"))
        app.state.dependencies = Dependencies(customers, catalog)
        yield
        await asyncio.sleep(0)  # let aiohttp finish closing transports before the loop stops
