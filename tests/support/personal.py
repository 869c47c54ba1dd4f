"""Tests' view of personal data in events (apps/common/personal.py): fetch a person's data key the way a
service does (the customer service's service-only route, with a service token) and open envelopes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

import httpx

from apps.common.personal import DataKey, open_fields, unwrap_data_key
from tests.support.http import api_client, create_product, service_url

__all__ = ["DATA_KEY_SCOPE", "data_key", "guest_checkout", "opened", "wait_for_order"]

DATA_KEY_SCOPE: Final = "customer:data-keys"


async def data_key(subject: str) -> DataKey | None:
    """The subject's data key; None once destroyed (410) or never made (404)."""
    async with api_client("service", scopes=[DATA_KEY_SCOPE], base_url=service_url("customer")) as http:
        response = await http.get(f"/api/internal/data-keys/{subject}")
    if response.status_code in (404, 410):
        return None
    assert response.status_code == 200, response.text
    body = response.json()
    return unwrap_data_key(body["subject"], body["kid"], body["key"])


async def opened(payload: Mapping[str, Any], fields: Iterable[str], subject: str, prefix: str = "") -> dict[str, Any]:
    """``payload`` with ``fields`` opened with the subject's key ([erased] once it is destroyed)."""
    return open_fields(await data_key(subject), prefix, payload, fields)


async def guest_checkout(address: Mapping[str, str]) -> tuple[dict[str, Any], str, dict[str, str]]:
    """A guest's completed checkout of one new product, shipped and billed to ``address``, through the
    running checkout API: (the checkout session, its order's id, the guest's header)."""
    product = await create_product("9.00")
    async with httpx.AsyncClient(base_url=service_url("checkout")) as http:
        cart = (await http.post("/api/carts")).json()
        headers = {"X-Guest-Token": cart["guest_token"]}
        added = await http.post(
            f"/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": 1}, headers=headers
        )
        assert added.status_code == 200, added.text
        body = {
            "cart_id": cart["id"],
            "shipping_address": dict(address),
            "shipping_method_id": "standard",
            "payment_method": {"type": "card", "token": "tok_visa_4242"},
        }
        started = await http.post("/api/checkout", json=body, headers=headers)
        assert started.status_code == 201, started.text
        key = {"Idempotency-Key": uuid.uuid4().hex}
        done = await http.post(f"/api/checkout/{started.json()['id']}/complete", headers={**headers, **key})
        assert done.status_code == 202, done.text
    return started.json(), done.json()["order_id"], headers


async def wait_for_order(order_id: str) -> dict[str, Any]:
    """The order once the order consumer has made it from its checkout.completed (staff's view)."""
    async with api_client(base_url=service_url("order")) as http:
        for _ in range(300):
            response = await http.get(f"/api/orders/{order_id}")
            if response.status_code == 200:
                return dict(response.json())
            await asyncio.sleep(0.2)
    raise AssertionError(f"order {order_id} was not created from its checkout.completed")
