"""The order service's calls to the customer and catalog services: short timeouts, clear failures.

One pooled httpx client per dependency, opened in the app's lifespan. A dependency that does not answer
in time, refuses the connection or fails with a 5xx becomes DependencyUnavailable (a 503 naming it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import httpx
import msgspec
from litestar import Litestar

from apps.common.errors import DependencyUnavailable
from apps.common.topology import BY_NAME
from apps.order.rules import CatalogPrice

TIMEOUT = httpx.Timeout(float(os.environ.get("ORDER_DEPENDENCY_TIMEOUT_S", "2.0")), connect=1.0)
LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=50)


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
    """The HTTP clients of the services an order depends on."""

    customers: httpx.AsyncClient
    catalog: httpx.AsyncClient

    async def customer_exists(self, customer_id: uuid.UUID) -> bool:
        response = await self._call("customer", self.customers.get(f"/api/customers/{customer_id}"))
        if response.status_code == httpx.codes.NOT_FOUND:
            return False
        self._require_ok("customer", response)
        return True

    async def prices(self, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, CatalogPrice]:
        """Sellable products among ``product_ids`` with their current price (the seed's ValidateProducts)."""
        body = msgspec.json.encode({"product_ids": product_ids})
        response = await self._call(
            "catalog",
            self.catalog.post("/api/products/validate", content=body, headers={"Content-Type": "application/json"}),
        )
        self._require_ok("catalog", response)
        try:
            validated = _validated.decode(response.content)
        except msgspec.DecodeError as exc:
            raise DependencyUnavailable("catalog", f"unexpected answer: {exc}") from exc
        return {p.id: CatalogPrice(p.id, p.sku, p.name, p.price, p.currency) for p in validated.valid}

    @staticmethod
    async def _call(name: str, request: object) -> httpx.Response:
        try:
            return await request  # type: ignore[misc,no-any-return]
        except httpx.TimeoutException as exc:
            raise DependencyUnavailable(name, "timed out") from exc
        except httpx.TransportError as exc:
            raise DependencyUnavailable(name, f"unreachable ({type(exc).__name__})") from exc

    @staticmethod
    def _require_ok(name: str, response: httpx.Response) -> None:
        if response.status_code != httpx.codes.OK:
            raise DependencyUnavailable(name, f"answered {response.status_code}")


@asynccontextmanager
async def dependencies_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open the clients when the app starts, close them when it stops (no I/O at import time)."""
    async with (
        httpx.AsyncClient(base_url=_base_url("customer"), timeout=TIMEOUT, limits=LIMITS) as customers,
        httpx.AsyncClient(base_url=_base_url("catalog"), timeout=TIMEOUT, limits=LIMITS) as catalog,
    ):
        app.state.dependencies = Dependencies(customers, catalog)
        yield
