"""Delivered orders to return (through the real checkout, saga, payment and sandbox), and the returns API."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx

from apps.common.topology import PROCESSES
from tests.support.checkout import US_ADDRESS
from tests.support.db import fetch
from tests.support.http import create_customer, create_product, service_url, set_stock
from tests.support.orders import eventually, produce_raw

SANDBOX = f"http://127.0.0.1:{next(p.port for p in PROCESSES if p.name == 'payment-sandbox')}"
# Consumers may be catching up on other tests' events first.
WITHIN = 120.0


async def stocked(price: str, units: int) -> dict[str, Any]:
    product = await create_product(price)
    await set_stock(product["id"], units)
    return product


async def _checkout(
    http: httpx.AsyncClient,
    lines: list[tuple[dict[str, Any], int]],
    customer_id: str | None = None,
    addressing: dict[str, Any] | None = None,
    token: str = "tok_visa",
) -> str:
    """A registered customer's checkout paid with the sandbox's ``token`` (tok_visa unless told), a new
    customer's unless told, to ``addressing`` (the body's address fields; a US address unless told); the
    order id."""
    base = service_url("checkout")
    customer_id = customer_id or (await create_customer(http))["id"]
    cart = await http.post(f"{base}/api/carts", json={"customer_id": customer_id})
    assert cart.status_code in (200, 201), cart.text
    cart_id = cart.json()["id"]
    for product, quantity in lines:
        added = await http.post(
            f"{base}/api/carts/{cart_id}/items", json={"product_id": product["id"], "quantity": quantity}
        )
        assert added.status_code == 200, added.text
    body = {
        "cart_id": cart_id,
        **(addressing or {"shipping_address": US_ADDRESS}),
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": token},
    }
    session = await http.post(f"{base}/api/checkout", json=body)
    assert session.status_code == 201, session.text
    done = await http.post(
        f"{base}/api/checkout/{session.json()['id']}/complete", headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert done.status_code == 202, done.text
    return str(done.json()["order_id"])


async def order(http: httpx.AsyncClient, order_id: str) -> dict[str, Any] | None:
    response = await http.get(f"{service_url('order')}/api/orders/{order_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


async def order_reaches(http: httpx.AsyncClient, order_id: str, status: str, payment_status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        current = await order(http, order_id)
        seen.update(current or {})
        return current is not None and (current["status"], current["payment_status"]) == (status, payment_status)

    await eventually(check, within=WITHIN, what=f"order {order_id} {status}/{payment_status}")
    return seen


async def move(http: httpx.AsyncClient, order_id: str, status: str) -> None:
    response = await http.post(f"{service_url('order')}/api/orders/{order_id}/status", json={"status": status})
    assert response.status_code == 200, response.text


async def delivered_order(
    http: httpx.AsyncClient,
    lines: list[tuple[dict[str, Any], int]],
    *,
    customer_id: str | None = None,
    addressing: dict[str, Any] | None = None,
    token: str = "tok_visa",
) -> dict[str, Any]:
    """An order paid by card, confirmed, shipped (captured) and delivered; GET /api/orders/{id}'s body.
    ``customer_id``, ``addressing`` and the card's ``token`` as for the checkout (a new customer, a US
    address, tok_visa by default)."""
    order_id = await _checkout(http, lines, customer_id, addressing, token)
    await order_reaches(http, order_id, "confirmed", "authorized")
    await move(http, order_id, "processing")
    await move(http, order_id, "shipped")
    await order_reaches(http, order_id, "shipped", "captured")
    await move(http, order_id, "delivered")
    delivered = await order(http, order_id)
    assert delivered is not None
    return delivered


async def delivered_orders(http: httpx.AsyncClient, *carts: list[tuple[dict[str, Any], int]]) -> list[dict[str, Any]]:
    """Several delivered orders at once (the saga's waits overlap)."""
    return list(await asyncio.gather(*(delivered_order(http, lines) for lines in carts)))


def line_id(placed: dict[str, Any], product: dict[str, Any]) -> int:
    return int(next(item["id"] for item in placed["items"] if item["product_id"] == product["id"]))


async def request_return(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post(f"{service_url('returns')}/api/returns", json=body)


async def act(http: httpx.AsyncClient, return_id: str, action: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(f"{service_url('returns')}/api/returns/{return_id}/{action}", json=body)


async def get_return(http: httpx.AsyncClient, return_id: str) -> dict[str, Any]:
    response = await http.get(f"{service_url('returns')}/api/returns/{return_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def return_reaches(http: httpx.AsyncClient, return_id: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        seen.update(await get_return(http, return_id))
        return bool(seen["status"] == status)

    try:
        await eventually(check, within=WITHIN, what=f"return {return_id} {status}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last seen {seen.get('status')}") from exc
    return seen


async def payments(http: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{service_url('payment')}/api/payments", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    return list(response.json())


async def sandbox_refunds(http: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{SANDBOX}/v1/ledger", params={"reference": order_id})
    assert response.status_code == 200, response.text
    return [refund for auth in response.json()["authorizations"] for refund in auth["refunds"]]


async def returns_rows(order_id: str) -> int:
    rows = await fetch("returns", "SELECT count(*) AS n FROM return_requests WHERE order_id = $1", uuid.UUID(order_id))
    return int(rows[0]["n"])


async def applied(service: str, group: str, event_id: uuid.UUID) -> bool:
    """Whether ``group`` (in ``service``'s database) took the event: its inbox row."""
    rows = await fetch(service, "SELECT 1 FROM inbox WHERE consumer_group = $1 AND event_id = $2", group, event_id)
    return bool(rows)


async def resend(return_id: str, event_type: str) -> list[uuid.UUID]:
    """The return's ``event_type`` record again (same event id: a redelivery) and a copy under a new id (what a
    re-published event would be); the ids to wait for."""
    rows = await fetch(
        "returns",
        "SELECT id, event_data, event_version, schema_version FROM event_store"
        " WHERE aggregate_id = $1 AND event_type = $2 ORDER BY created_at DESC, id DESC LIMIT 1",  # the latest
        uuid.UUID(return_id),
        event_type,
    )
    [row] = rows
    event_id, data = row["id"], json.loads(row["event_data"])
    copy = uuid.uuid4()
    for eid in (event_id, copy):
        # As Debezium sent it: the row's versions too (return.received is v2: read as v1 it loses no_refund_reason).
        produce_raw(
            "commerce.return",
            key=return_id,
            event_type=event_type,
            payload=data,
            event_id=eid,
            event_version=row["event_version"],
            schema_version=row["schema_version"],
        )
    return [copy]
