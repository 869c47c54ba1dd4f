"""Create customers and products through the real running services, as an order's dependencies."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx

from apps.common.topology import BY_NAME


def service_url(name: str) -> str:
    return f"http://127.0.0.1:{BY_NAME[name].port}"


async def create_customer(client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    body = {"email": f"buyer-{uuid.uuid4().hex[:12]}@example.com", "first_name": "Ada", "last_name": "Buyer"}
    async with httpx.AsyncClient(base_url=service_url("customer")) as http:
        response = await (client or http).post(f"{service_url('customer')}/api/customers", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_product(price: str = "10.00", currency: str = "USD") -> dict[str, Any]:
    body = {"sku": f"T-{uuid.uuid4().hex[:16].upper()}", "name": "Test product", "price": price, "currency": currency}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{service_url('catalog')}/api/products", json=body)
    assert response.status_code == 201, response.text
    product = dict(response.json())
    assert Decimal(product["price"]) == Decimal(price)
    return product


async def set_stock(product_id: str, quantity: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.put(f"{service_url('warehouse')}/api/inventory/{product_id}", json={"quantity": quantity})
    assert response.status_code == 200, response.text
    return dict(response.json())
