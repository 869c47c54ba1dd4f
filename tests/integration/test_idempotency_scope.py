"""Order Idempotency-Keys are the customer's own (migrations order_0017-0018; docs/decisions.md).

Until session 29 a key was one namespace across customers: customer Y's POST /api/orders with key K was
refused (409) because customer X had used K, and the 409 told Y that someone had. Each customer here sends
with their own bearer token to the running order service, each request on a connection of its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from infra import jobs
from tests.support.db import connect, fetch
from tests.support.http import api_client, create_customer, create_product, service_url

pytestmark = pytest.mark.usefixtures("stack")

ADDRESS = {"address_line1": "1 Main St", "city": "Springfield", "country": "US"}


def body(customer: dict[str, Any], product: dict[str, Any], quantity: int = 1) -> dict[str, Any]:
    items = [{"product_id": product["id"], "quantity": quantity}]
    return {"customer_id": customer["id"], "items": items, "shipping_address": ADDRESS}


async def place(customer: dict[str, Any], order: dict[str, Any], key: str) -> httpx.Response:
    """POST /api/orders as the customer (their own token), on a connection of its own."""
    async with api_client("customer", customer_id=customer["id"], base_url=service_url("order"), timeout=30) as http:
        return await http.post("/api/orders", json=order, headers={"Idempotency-Key": key})


async def orders_of(customer: dict[str, Any]) -> int:
    rows = await fetch("order", "SELECT count(*) FROM orders WHERE customer_id = $1", customer["id"])
    return int(rows[0][0])


async def test_two_customers_with_one_key_each_place_their_order() -> None:
    """Failed before: the second customer's order was refused 409 because the first had used the key."""
    x, y, product = await create_customer(), await create_customer(), await create_product("3.00")
    key = f"mine-{uuid.uuid4()}"
    first = await place(x, body(x, product), key)
    second = await place(y, body(y, product), key)
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert "Idempotent-Replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert second.json()["customer_id"] == y["id"]
    assert (await orders_of(x), await orders_of(y)) == (1, 1)
    # Each keeps their own: a retry of each is a replay of their own order.
    again = await asyncio.gather(place(x, body(x, product), key), place(y, body(y, product), key))
    assert [a.json()["id"] for a in again] == [first.json()["id"], second.json()["id"]]
    assert all(a.headers.get("Idempotent-Replayed") == "true" for a in again)


async def test_the_same_key_and_body_replay_the_first_order() -> None:
    customer, product = await create_customer(), await create_product("3.00")
    key = f"retry-{uuid.uuid4()}"
    first = await place(customer, body(customer, product), key)
    retry = await place(customer, body(customer, product), key)
    assert (first.status_code, retry.status_code) == (201, 201), retry.text
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert await orders_of(customer) == 1


async def test_the_same_key_with_another_body_is_a_409_naming_the_key() -> None:
    customer, product = await create_customer(), await create_product("3.00")
    key = f"other-{uuid.uuid4()}"
    assert (await place(customer, body(customer, product), key)).status_code == 201
    other = await place(customer, body(customer, product, quantity=2), key)
    assert other.status_code == 409, other.text
    assert other.json()["extra"][0]["key"] == "Idempotency-Key"
    assert other.json()["extra"][0].get("source") == "header"
    assert await orders_of(customer) == 1


async def test_one_customers_racing_requests_with_one_key_place_one_order_and_another_customer_is_apart() -> None:
    """Both of one customer's requests race through the lookup (neither sees a key yet): the loser's insert
    collides on (customer_id, key) and it answers with the winner's order. A second customer racing with
    the same key at the same moment collides with nobody."""
    x, y, product = await create_customer(), await create_customer(), await create_product("3.00")
    key = f"race-{uuid.uuid4()}"
    answers = await asyncio.gather(
        *(place(x, body(x, product), key) for _ in range(4)), *(place(y, body(y, product), key) for _ in range(4))
    )
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    by_x, by_y = answers[:4], answers[4:]
    assert len({a.json()["id"] for a in by_x}) == 1 and len({a.json()["id"] for a in by_y}) == 1
    assert by_x[0].json()["id"] != by_y[0].json()["id"]
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in by_x) == 3
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in by_y) == 3
    assert (await orders_of(x), await orders_of(y)) == (1, 1)


async def test_pruning_a_customers_old_key_leaves_another_customers_fresh_row_of_that_key() -> None:
    """The hourly job deleted by key (``key IN (old keys)``): with keys per customer, X's day-old K would
    have taken Y's K of a minute ago with it, and Y's retry would have placed a second order."""
    x, y, product = await create_customer(), await create_customer(), await create_product("3.00")
    key = f"prune-{uuid.uuid4()}"
    assert (await place(x, body(x, product), key)).status_code == 201
    kept = await place(y, body(y, product), key)
    assert kept.status_code == 201
    conn = await connect("order")
    try:
        await conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE customer_id = $1 AND key = $2",
            x["id"],
            key,
        )
        await jobs.idempotency_keys(dt.datetime.now(dt.UTC))
        left = await conn.fetch("SELECT customer_id FROM idempotency_keys WHERE key = $1", key)
    finally:
        await conn.close()
    assert [r["customer_id"] for r in left] == [y["id"]]
    retry = await place(y, body(y, product), key)
    assert retry.json()["id"] == kept.json()["id"] and retry.headers.get("Idempotent-Replayed") == "true"
