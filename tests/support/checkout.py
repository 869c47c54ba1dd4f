"""Carts and checkouts through the checkout app, and what the checkout database holds about them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from tests.support.db import connect
from tests.support.http import api_client, service_url

Client = AsyncTestClient[Any]
US_ADDRESS = {"address_line1": "1 Main St", "city": "Springfield", "country": "US"}


async def guest_cart(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, str]]:
    """A new guest cart and the header that opens it (the in-process app's client, or the running service's)."""
    response = await client.post("/api/carts")
    assert response.status_code == 201, response.text
    cart = response.json()
    return cart, {"X-Guest-Token": cart["guest_token"]}


async def add(
    client: httpx.AsyncClient, cart: dict[str, Any], headers: dict[str, str], product: dict[str, Any], qty: int
) -> Any:
    response = await client.post(
        f"/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": qty}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def checkout_body(cart: str, **overrides: Any) -> dict[str, Any]:
    return {
        "cart_id": cart,
        "shipping_address": US_ADDRESS,
        "billing_address": US_ADDRESS,
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": "tok_visa_4242"},
        **overrides,
    }


async def set_price(product: dict[str, Any], price: str) -> None:
    async with api_client() as http:
        response = await http.patch(f"{service_url('catalog')}/api/products/{product['id']}", json={"price": price})
    assert response.status_code == 200, response.text


async def withdraw(product: dict[str, Any]) -> None:
    async with api_client() as http:
        response = await http.delete(f"{service_url('catalog')}/api/products/{product['id']}")
    assert response.status_code in (200, 204), response.text


async def scalar(query: str, *args: Any) -> Any:
    conn = await connect("checkout")
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def execute(query: str, *args: Any) -> None:
    conn = await connect("checkout")
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


async def item_rows(cart_id: str) -> int:
    return int(await scalar("SELECT count(*) FROM cart_items WHERE cart_session_id = $1", uuid.UUID(cart_id)))


async def checkout_rows(cart_id: str) -> int:
    return int(await scalar("SELECT count(*) FROM checkout_sessions WHERE cart_id = $1", uuid.UUID(cart_id)))


async def completed_events(checkout_id: str) -> int:
    query = "SELECT count(*) FROM event_store WHERE aggregate_id = $1 AND event_type = 'checkout.completed'"
    return int(await scalar(query, uuid.UUID(checkout_id)))
