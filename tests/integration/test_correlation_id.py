"""One id from the edge through every hop (outbox/correlation.py): POST /api/orders with X-Request-ID R, and
order.created, the warehouse's inventory.reserved and the order's order.confirmed all carry R as their
correlation_id header on the wire (through Debezium), and R is on the order API's and the warehouse
consumer's log lines about that order. A checkout paid by card likewise, through the payment ledger: the
worker carries the authorization out under R (payment_operations.correlation_id), so payment.authorized and
the confirmation after it carry R, and the order saga's lines name each step with it. And the sweeper cancels
a timed-out order under the id its order.created carries."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from apps.order.checkout_orders import create_from_checkout
from apps.order.sweeper import Sweeper
from outbox.correlation import correlation_id
from tests.support import log_files
from tests.support.checkout import US_ADDRESS
from tests.support.db import fetch
from tests.support.http import api_client, create_customer, create_product, service_url, set_stock
from tests.support.kafka import Received, TopicTail
from tests.support.orders import checkout_completed, order_created, order_engine, write_events

pytestmark = pytest.mark.usefixtures("stack")

ORDERS = f"{service_url('order')}/api/orders"


def _of(order_id: str, event_type: str) -> Any:
    def found(seen: list[Received]) -> bool:
        return any(r.key == order_id and r.headers.get("event_type") == event_type for r in seen)

    return found


async def test_a_request_id_is_on_every_event_and_log_line_of_the_order_it_placed() -> None:
    request_id = str(uuid.uuid4())
    customer = (await create_customer())["id"]
    product = await create_product()
    await set_stock(product["id"], 5)
    orders, inventory = TopicTail("commerce.order"), TopicTail("commerce.inventory")
    before = log_files.sizes()
    try:
        body = {"customer_id": customer, "items": [{"product_id": product["id"], "quantity": 1}]}
        async with api_client("customer", customer_id=customer) as http:
            answer = await http.post(ORDERS, json=body, headers={"X-Request-ID": request_id.upper()})
        assert answer.status_code == 201, answer.text
        assert answer.headers["x-request-id"] == request_id  # kept, in lower case
        order_id = answer.json()["id"]

        reserved = inventory.read_until(_of(order_id, "inventory.reserved"), timeout=90)
        placed = orders.read_until(
            lambda seen: _of(order_id, "order.created")(seen) and _of(order_id, "order.confirmed")(seen), timeout=90
        )
    finally:
        orders.close()
        inventory.close()

    mine = [r for r in [*placed, *reserved] if r.key == order_id]
    carried = {r.headers["event_type"]: r.headers.get("correlation_id") for r in mine}
    assert carried == {
        "order.created": request_id,
        "inventory.reserved": request_id,
        "order.confirmed": request_id,
    }

    written = log_files.written_since(before)
    api_lines = [json.loads(line) for line in written[log_files.LOGS / "order-api.log"].splitlines() if line]
    ours = [
        (line["method"], line["route"], line["status"]) for line in api_lines if line.get("request_id") == request_id
    ]
    assert ours == [("POST", "/api/orders", 201)]  # its access log line, the only one it wrote
    warehouse = written[log_files.LOGS / "warehouse-consumer.log"].decode()
    assert f"order {order_id}: inventory.reserved request_id={request_id}" in warehouse


def _all_of(keys: set[tuple[str, str]]) -> Any:
    def found(seen: list[Received]) -> bool:
        return all(_of(*key)(seen) for key in keys)

    return found


async def _complete_checkout(http: Any, product: dict[str, Any], request_id: str) -> tuple[str, str]:
    """A new customer's checkout of one unit paid with the sandbox's tok_visa, completed with X-Request-ID
    ``request_id`` (the cart and the checkout's start get ids of their own); (checkout id, order id)."""
    base = service_url("checkout")
    customer_id = (await create_customer(http))["id"]
    cart = await http.post(f"{base}/api/carts", json={"customer_id": customer_id})
    assert cart.status_code in (200, 201), cart.text
    cart_id = cart.json()["id"]
    added = await http.post(f"{base}/api/carts/{cart_id}/items", json={"product_id": product["id"], "quantity": 1})
    assert added.status_code == 200, added.text
    body = {
        "cart_id": cart_id,
        "shipping_address": US_ADDRESS,
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": "tok_visa"},
    }
    started = await http.post(f"{base}/api/checkout", json=body)
    assert started.status_code == 201, started.text
    checkout_id = started.json()["id"]
    headers = {"Idempotency-Key": str(uuid.uuid4()), "X-Request-ID": request_id}
    done = await http.post(f"{base}/api/checkout/{checkout_id}/complete", headers=headers)
    assert done.status_code == 202, done.text
    assert done.headers["x-request-id"] == request_id
    return str(checkout_id), str(done.json()["order_id"])


async def test_a_checkouts_request_id_is_on_every_event_of_its_order_through_the_payment() -> None:
    request_id = str(uuid.uuid4())
    product = await create_product("4.00")
    await set_stock(product["id"], 5)
    topics = ("commerce.checkout", "commerce.order", "commerce.inventory", "commerce.order.payment", "commerce.payment")
    tails = {topic: TopicTail(topic) for topic in topics}
    before = log_files.sizes()
    try:
        async with api_client(timeout=30) as http:
            checkout_id, order_id = await _complete_checkout(http, product, request_id)
        wanted = {
            "commerce.checkout": [(checkout_id, "checkout.completed")],
            "commerce.order": [(order_id, "order.created"), (order_id, "order.confirmed")],
            "commerce.inventory": [(order_id, "inventory.reserved")],
            "commerce.order.payment": [(order_id, "order.payment_requested")],
            "commerce.payment": [(order_id, "payment.authorized")],
        }
        carried: dict[str, str | None] = {}
        for topic, events in wanted.items():
            keys = set(events)
            seen = tails[topic].read_until(_all_of(keys), timeout=120)
            carried |= {
                r.headers["event_type"]: r.headers.get("correlation_id")
                for r in seen
                if (r.key, r.headers.get("event_type")) in keys
            }
    finally:
        for tail in tails.values():
            tail.close()

    assert carried == dict.fromkeys(
        (
            "checkout.completed",
            "order.created",
            "inventory.reserved",
            "order.payment_requested",
            "payment.authorized",
            "order.confirmed",
        ),
        request_id,
    )
    (kept,) = await fetch(
        "payment",
        "SELECT o.correlation_id FROM payment_operations o JOIN payments p ON p.id = o.payment_id "
        "WHERE p.order_id = $1 AND o.kind = 'authorize'",
        uuid.UUID(order_id),
    )
    assert str(kept["correlation_id"]) == request_id  # written by the payment consumer, read by the worker

    saga = log_files.written_since(before)[log_files.LOGS / "order-consumer.log"].decode()
    for step in (f"order.created from checkout {checkout_id}", "order.payment_requested", "order.confirmed"):
        assert f"order {order_id}: {step} request_id={request_id}" in saga


async def test_an_event_written_outside_any_request_carries_no_id() -> None:
    """A sweeper's or a job's event: NULL in the column, no value on the wire, and no id a consumer would set."""
    created = order_created(f"no-request-{uuid.uuid4().hex[:8]}", "1.00")
    orders = TopicTail("commerce.order")
    try:
        await write_events(order_engine(), [created])
        seen = orders.read_until(_of(str(created.order_id), "order.created"), timeout=60)
    finally:
        orders.close()
    (record,) = [r for r in seen if r.key == str(created.order_id)]
    assert record.headers["correlation_id"] == ""  # sent with a null value (tests.support.kafka reads it as "")


async def test_a_timed_out_order_is_cancelled_under_the_id_it_was_placed_with() -> None:
    """The sweeper reads the id of the order's order.created: its cancellation carries it as the answers would."""
    request_id = str(uuid.uuid4())
    checkout = checkout_completed("tok_visa")  # a product nobody stocks: the warehouse's refusal comes later
    engine = order_engine()
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        token = correlation_id.set(request_id)  # as the order-saga consumer applies the checkout's event
        try:
            async with sessions() as session, session.begin():
                assert await create_from_checkout(session, checkout)
                past = "UPDATE order_sagas SET deadline_at = now() - interval '1 second' WHERE order_id = :id"
                await session.execute(text(past), {"id": checkout.order_id})
        finally:
            correlation_id.reset(token)
        await Sweeper(sessions).work()  # the live sweeper may take it first: the same code
    finally:
        await engine.dispose()
    (saga,) = await fetch("order", "SELECT reason FROM order_sagas WHERE order_id = $1", checkout.order_id)
    assert saga["reason"] == "timeout"
    events = await fetch(
        "order",
        "SELECT event_type, correlation_id FROM event_store WHERE aggregate_id = $1 ORDER BY event_version",
        checkout.order_id,
    )
    carried = {row["event_type"]: str(row["correlation_id"]) for row in events}
    assert carried == {"order.created": request_id, "order.cancelled": request_id}
