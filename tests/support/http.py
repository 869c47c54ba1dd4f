"""HTTP to the running services: clients that carry a bearer token, and the customers and products that an
order needs, created through the real APIs."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apps.common.auth_issuer import mint
from apps.common.topology import BY_NAME

ClientT = TypeVar("ClientT", bound=httpx.AsyncClient)

# Long enough for the whole suite: a cached token never expires under a test.
TOKEN_TTL_S = 4 * 3600


def service_url(name: str) -> str:
    return f"http://127.0.0.1:{BY_NAME[name].port}"


@lru_cache(maxsize=256)
def _token(role: str, customer_id: str | None, service: str | None, scopes: tuple[str, ...]) -> str:
    return mint(role, customer_id=customer_id, service=service, scopes=scopes, ttl_s=TOKEN_TTL_S)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth_headers(
    role: str = "admin",
    *,
    customer_id: uuid.UUID | str | None = None,
    service: str | None = None,
    scopes: Iterable[str] = (),
) -> dict[str, str]:
    """``Authorization: Bearer <token>`` for ``role`` from the local issuer (``.stack/keys/``)."""
    if role == "service" and service is None:
        service = "tests"
    cid = None if customer_id is None else str(customer_id)
    return bearer(_token(role, cid, service, tuple(sorted(scopes))))


def api_client(
    role: str = "admin",
    *,
    customer_id: uuid.UUID | str | None = None,
    service: str | None = None,
    scopes: Iterable[str] = (),
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request carries a token for ``role`` (admin unless told)."""
    headers = {**auth_headers(role, customer_id=customer_id, service=service, scopes=scopes)}
    headers.update(httpx_kwargs.pop("headers", None) or {})
    return httpx.AsyncClient(headers=headers, **httpx_kwargs)


async def create_customer(client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    body = {"email": f"buyer-{uuid.uuid4().hex[:12]}@example.com", "first_name": "Ada", "last_name": "Buyer"}
    async with api_client(base_url=service_url("customer")) as http:
        response = await (client or http).post(f"{service_url('customer')}/api/customers", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_product(price: str = "10.00", currency: str = "USD") -> dict[str, Any]:
    body = {"sku": f"T-{uuid.uuid4().hex[:16].upper()}", "name": "Test product", "price": price, "currency": currency}
    async with api_client() as http:
        response = await http.post(f"{service_url('catalog')}/api/products", json=body)
    assert response.status_code == 201, response.text
    product = dict(response.json())
    assert Decimal(product["price"]) == Decimal(price)
    return product


async def set_stock(product_id: str, quantity: int) -> dict[str, Any]:
    async with api_client() as http:
        response = await http.put(f"{service_url('warehouse')}/api/inventory/{product_id}", json={"quantity": quantity})
    assert response.status_code == 200, response.text
    return dict(response.json())


def authorized(client: ClientT, role: str = "admin", *, customer_id: uuid.UUID | str | None = None) -> ClientT:
    """``client`` (e.g. Litestar's ``AsyncTestClient``) with a token for ``role`` on every request."""
    client.headers.update(auth_headers(role, customer_id=customer_id))
    return client


@contextlib.asynccontextmanager
async def in_process(
    create_app: Callable[[], Litestar], service: str, role: str | None = None
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A service's app from the tree, in this process, against the running stack: its calls to other services
    carry ``service``'s own token and scopes (SERVICE_NAME), and every request a token for ``role`` if given."""
    before = os.environ.get("SERVICE_NAME")
    os.environ["SERVICE_NAME"] = service
    try:
        async with AsyncTestClient(app=create_app()) as client:
            yield client if role is None else authorized(client, role)
    finally:
        if before is None:
            os.environ.pop("SERVICE_NAME", None)
        else:
            os.environ["SERVICE_NAME"] = before
