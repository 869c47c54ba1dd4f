"""Races on the running stack that the other tests do not run: each request on its own connection, as
separate clients would send them. None of these found a defect when written (session 28); they pin what
holds: one order per cart, one order per Idempotency-Key, stock given back when a cancellation overtakes
the warehouse's reservation."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from tests.support.db import fetch
from tests.support.http import api_client, create_customer, create_product, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

ADDRESS = {"address_line1": "1 Main St", "city": "Springfield", "country": "US"}


async def on_own_connections(*calls: Callable[[httpx.AsyncClient], Coroutine[Any, Any, httpx.Response]]) -> list[int]:
    """Each call on a client of its own (its own TCP connection), all started together: their statuses."""

    async def one(call: Callable[[httpx.AsyncClient], Coroutine[Any, Any, httpx.Response]]) -> httpx.Response:
        async with api_client(timeout=30) as http:
            return await call(http)

    answers = await asyncio.gather(*(one(call) for call in calls))
    return [answer.status_code for answer in answers]


async def test_several_checkouts_of_one_cart_completed_at_once_make_one_order() -> None:
    checkout = service_url("checkout")
    customer, product = await create_customer(), await create_product("5.00")
    async with api_client(base_url=checkout, timeout=30) as http:
        cart = (await http.post("/api/carts", json={"customer_id": customer["id"]})).json()
        added = await http.post(f"/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": 1})
        assert added.status_code == 200, added.text
        body = {
            "cart_id": cart["id"],
            "shipping_address": ADDRESS,
            "shipping_method_id": "standard",
            "payment_method": {"type": "card", "token": "tok_visa"},
        }
        sessions = [(await http.post("/api/checkout", json=body)).json()["id"] for _ in range(5)]

    def complete(session: str) -> Callable[[httpx.AsyncClient], Coroutine[Any, Any, httpx.Response]]:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        return lambda http: http.post(f"{checkout}/api/checkout/{session}/complete", headers=headers)

    statuses = await on_own_connections(*(complete(session) for session in sessions))
    assert Counter(statuses) == {202: 1, 409: 4}, statuses
    rows = await fetch(
        "checkout",
        "SELECT count(*) FROM event_store WHERE event_type = 'checkout.completed' AND aggregate_id = ANY($1::uuid[])",
        [uuid.UUID(session) for session in sessions],
    )
    assert rows[0][0] == 1


async def test_one_idempotency_key_raced_with_two_bodies_places_one_order() -> None:
    orders = service_url("order")
    customer, product = await create_customer(), await create_product("3.00")
    key = f"race-{uuid.uuid4()}"

    def place(quantity: int) -> Callable[[httpx.AsyncClient], Coroutine[Any, Any, httpx.Response]]:
        body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": quantity}]}
        return lambda http: http.post(f"{orders}/api/orders", json=body, headers={"Idempotency-Key": key})

    statuses = await on_own_connections(*(place(1 + n % 2) for n in range(8)))
    assert set(statuses) <= {201, 409} and 201 in statuses and 409 in statuses, statuses
    rows = await fetch("order", "SELECT count(*) FROM orders WHERE customer_id = $1", customer["id"])
    assert rows[0][0] == 1


async def test_a_cancellation_that_overtakes_the_reservation_gives_the_stock_back() -> None:
    orders, warehouse = service_url("order"), service_url("warehouse")
    product = await create_product("4.00")
    async with api_client(timeout=30) as http:
        stocked = await http.put(f"{warehouse}/api/inventory/{product['id']}", json={"quantity": 3})
        assert stocked.status_code == 200, stocked.text
        placed_ids = []
        for _ in range(3):
            customer = await create_customer()
            body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 1}]}
            placed = (await http.post(f"{orders}/api/orders", json=body)).json()
            cancelled = await http.post(f"{orders}/api/orders/{placed['id']}/cancel", json={"reason": "changed mind"})
            assert cancelled.status_code == 200, cancelled.text
            placed_ids.append(uuid.UUID(placed["id"]))

        async def all_given_back() -> bool:
            rows = await fetch(
                "warehouse", "SELECT status FROM reservations WHERE order_id = ANY($1::uuid[])", placed_ids
            )
            stock = (await http.get(f"{warehouse}/api/inventory/{product['id']}")).json()
            decided = len(rows) == len(placed_ids) and all(row["status"] in ("released", "failed") for row in rows)
            return decided and stock["reserved"] == 0 and stock["available"] == 3

        await eventually(all_given_back, within=90, what="every cancelled order's stock given back")


async def test_a_checkout_completed_right_after_its_customer_was_erased_is_refused() -> None:
    """The erasure answers, then the customer's open checkout is completed at once (before the checkout
    consumer cancels it). The checkout sealed the addresses with the buyer's data key from its 30 s cache,
    already destroyed, and answered 202; the order saga, its own cache warm too, opened them and created
    the order after the order service had applied customer.erased: an erased customer's address kept in
    orders (3 of 3 probes). A completion now asks for the key itself: 410, refused."""
    checkout, customers = service_url("checkout"), service_url("customer")
    customer, product = await create_customer(), await create_product("4.00")
    body = {
        "shipping_address": ADDRESS,
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": "tok_visa"},
    }
    async with api_client(base_url=checkout, timeout=30) as http:

        async def started() -> str:
            cart = (await http.post("/api/carts", json={"customer_id": customer["id"]})).json()
            added = await http.post(f"/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": 1})
            assert added.status_code == 200, added.text
            session = await http.post("/api/checkout", json={"cart_id": cart["id"], **body})
            assert session.status_code == 201, session.text
            return str(session.json()["id"])

        first = await started()  # a completion a moment before: every cache of the buyer's key is warm
        done = await http.post(f"/api/checkout/{first}/complete", headers={"Idempotency-Key": uuid.uuid4().hex})
        assert done.status_code == 202, done.text
        second = await started()
        erased = await http.post(f"{customers}/api/customers/{customer['id']}/erase")
        assert erased.status_code == 202, erased.text
        late = await http.post(f"/api/checkout/{second}/complete", headers={"Idempotency-Key": uuid.uuid4().hex})

    assert late.status_code == 409, late.text
    assert late.json()["extra"][0]["key"] == "checkout_id"
    rows = await fetch(
        "checkout",
        "SELECT count(*) FROM event_store WHERE event_type = 'checkout.completed' AND aggregate_id = $1",
        uuid.UUID(second),
    )
    assert rows[0][0] == 0
