"""The order service in-process, against the real database and the real customer and catalog services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apps.order.app import create_app
from tests.support.db import connect, fetch, outbox_fails_at_commit
from tests.support.http import authorized, create_customer, create_product, set_stock
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Any]]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


@pytest.fixture
async def customer() -> dict[str, Any]:
    return await create_customer()


def order_body(customer: dict[str, Any], *lines: tuple[dict[str, Any], int]) -> dict[str, Any]:
    return {
        "customer_id": customer["id"],
        "items": [{"product_id": product["id"], "quantity": quantity} for product, quantity in lines],
        "shipping_address": {"address_line1": "1 Main St", "city": "Springfield", "country": "US"},
    }


async def orders_of(customer_id: str) -> int:
    conn = await connect("order")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM orders WHERE customer_id = $1", customer_id))
    finally:
        await conn.close()


async def events_about(customer_id: str) -> list[str]:
    conn = await connect("order")
    try:
        rows = await conn.fetch(
            "SELECT event_type FROM event_store WHERE event_data->>'customer_id' = $1 ORDER BY created_at", customer_id
        )
        return [r["event_type"] for r in rows]
    finally:
        await conn.close()


async def status_history(order_id: str) -> list[tuple[str | None, str, str | None, str | None]]:
    """The order's order_status_history rows, oldest first: (status_from, status_to, reason, changed_by)."""
    rows = await fetch(
        "order",
        "SELECT status_from, status_to, reason, changed_by FROM order_status_history WHERE order_id = $1 ORDER BY id",
        uuid.UUID(order_id),
    )
    return [(r["status_from"], r["status_to"], r["reason"], r["changed_by"]) for r in rows]


async def stocked_product(price: str = "10.00") -> dict[str, Any]:
    """A product the warehouse can reserve, so the saga (the order-consumer) confirms orders of it."""
    product = await create_product(price)
    await set_stock(product["id"], 100)
    return product


async def settled(client: AsyncTestClient[Any], order_id: str) -> dict[str, Any]:
    """The order once its saga decided it (placed orders are pending until the warehouse answers)."""
    seen: dict[str, Any] = {}

    async def decided() -> bool:
        seen.update((await client.get(f"/api/orders/{order_id}")).json())
        return bool(seen["status"] != "pending")

    await eventually(decided, within=90, what=f"order {order_id} confirmed or cancelled by its saga")
    return seen


SAGA_MOVES = {
    "status",
    "status_changed_at",
    "waiting_on",
    "waiting_until",
    "updated_at",
    "cancelled_at",
    "payment_status",
}


async def test_placing_an_order_prices_it_from_the_catalog_and_writes_rows_and_event(
    client: AsyncTestClient[Any], customer: dict[str, Any]
) -> None:
    shirt, mug = await stocked_product("19.90"), await stocked_product("5.05")
    response = await client.post("/api/orders", json=order_body(customer, (shirt, 2), (mug, 3)))
    assert response.status_code == 201, response.text
    order = response.json()
    # Born pending, waiting on the warehouse's reservation until a deadline.
    assert order["status"] == "pending" and order["payment_status"] == "pending"
    assert order["waiting_on"] == "reservation" and order["waiting_until"] is not None
    assert order["total_amount"] == "54.95" and order["currency"] == "USD"
    assert [(i["sku"], i["quantity"], i["total_price"]) for i in order["items"]] == [
        (shirt["sku"], 2, "39.80"),
        (mug["sku"], 3, "15.15"),
    ]
    assert order["order_number"].startswith("ORD-")
    assert (await events_about(customer["id"]))[0] == "order.created"
    conn = await connect("order")
    try:
        history = await conn.fetch(
            "SELECT status_from, status_to FROM order_status_history WHERE order_id = $1 ORDER BY id",
            uuid.UUID(order["id"]),
        )
    finally:
        await conn.close()
    assert (history[0]["status_from"], history[0]["status_to"]) == (None, "pending")
    fetched = await client.get(f"/api/orders/{order['id']}")
    assert fetched.status_code == 200
    # Only what the saga moves may differ from the creation's answer.
    assert {k: v for k, v in fetched.json().items() if k not in SAGA_MOVES} == {
        k: v for k, v in order.items() if k not in SAGA_MOVES
    }
    # The saga confirms it once the warehouse reserved the stock.
    decided = await settled(client, order["id"])
    assert decided["status"] == "confirmed" and decided["waiting_on"] is None and decided["waiting_until"] is None
    assert {k: v for k, v in decided.items() if k not in SAGA_MOVES} == {
        k: v for k, v in order.items() if k not in SAGA_MOVES
    }
    assert await events_about(customer["id"]) == ["order.created", "order.confirmed"]
    assert await status_history(order["id"]) == [
        (None, "pending", "awaiting stock", "order-service"),
        ("pending", "confirmed", "stock reserved", "order-saga"),
    ]


async def test_an_idempotency_key_places_the_order_once(client: AsyncTestClient[Any], customer: dict[str, Any]) -> None:
    product = await create_product("3.00")
    body = order_body(customer, (product, 1))
    key = f"key-{uuid.uuid4()}"
    answers = await asyncio.gather(
        *(client.post("/api/orders", json=body, headers={"Idempotency-Key": key}) for _ in range(8))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
    assert await orders_of(customer["id"]) == 1
    # One order.created; the saga may already have cancelled it (no stock): its decision is its own event.
    assert (await events_about(customer["id"]))[:1] == ["order.created"]
    assert (await events_about(customer["id"])).count("order.created") == 1

    other = await client.post("/api/orders", json=order_body(customer, (product, 2)), headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.json()["extra"][0]["key"] == "Idempotency-Key"


def one_line(line: bytes, extra: bytes = b"") -> bytes:
    return b'{"customer_id": "%(customer)s", "items": [' + line + b"]" + extra + b"}"


PRODUCT_LINE = b'{"product_id": "%(product)s", "quantity": 1}'

BAD_BODIES = [
    (b'{"customer_id": ', 400, "body"),
    (b"[]", 400, "body"),
    (b'{"customer_id": 12, "items": []}', 400, "customer_id"),
    (b'{"items": [' + PRODUCT_LINE + b"]}", 400, "customer_id"),
    (one_line(b""), 400, "items"),
    (one_line(b'{"product_id": "%(product)s", "quantity": 0}'), 400, "items[0].quantity"),
    (one_line(b'{"product_id": "%(product)s", "quantity": -3}'), 400, "items[0].quantity"),
    (one_line(b'{"product_id": "%(product)s", "quantity": "two"}'), 400, "items[0].quantity"),
    (one_line(b'{"product_id": "%(product)s", "quantity": 1.5}'), 400, "items[0].quantity"),
    (b'{"customer_id": "%(customer)s", "items": "everything"}', 400, "items"),
    (one_line(b'{"product_id": "nope", "quantity": 1}'), 400, "items[0].product_id"),
    (one_line(PRODUCT_LINE, b', "surprise": 1'), 400, "surprise"),
    (one_line(PRODUCT_LINE + b", " + PRODUCT_LINE), 422, "items[1].product_id"),
    (one_line(b'{"product_id": "%(unknown)s", "quantity": 1}'), 422, "items[0].product_id"),
    (b'{"customer_id": "%(unknown)s", "items": [' + PRODUCT_LINE + b"]}", 422, "customer_id"),
]


@pytest.mark.parametrize(("template", "status", "field"), BAD_BODIES)
async def test_bad_orders_get_a_clear_4xx_naming_the_field_and_write_nothing(
    client: AsyncTestClient[Any], customer: dict[str, Any], template: bytes, status: int, field: str
) -> None:
    product = await create_product()
    body = template % {
        b"customer": customer["id"].encode(),
        b"product": product["id"].encode(),
        b"unknown": str(uuid.uuid4()).encode(),
    }
    response = await client.post("/api/orders", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert field in [e.get("key") for e in response.json().get("extra", [])], response.text
    assert await orders_of(customer["id"]) == 0
    assert await events_about(customer["id"]) == []


async def test_mixed_currencies_are_refused(client: AsyncTestClient[Any], customer: dict[str, Any]) -> None:
    usd, eur = await create_product("1.00", "USD"), await create_product("1.00", "EUR")
    response = await client.post("/api/orders", json=order_body(customer, (usd, 1), (eur, 1)))
    assert response.status_code == 422  # each line valid alone: InconsistentFields, as in a cart
    assert response.json()["extra"][0]["key"] == "items[1].product_id"
    assert await orders_of(customer["id"]) == 0


async def test_an_oversized_body_is_413(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/api/orders", content=b"{" + b" " * (2 * 1024 * 1024) + b"}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_status_moves_along_allowed_transitions_only(
    client: AsyncTestClient[Any], customer: dict[str, Any]
) -> None:
    product = await stocked_product()
    order = (await client.post("/api/orders", json=order_body(customer, (product, 1)))).json()
    # Only the saga confirms (by hand: 409, whether it is still pending or confirmed already).
    by_hand = await client.post(f"/api/orders/{order['id']}/status", json={"status": "confirmed"})
    assert by_hand.status_code == 409 and by_hand.json()["extra"][0]["key"] == "status"
    assert (await settled(client, order["id"]))["status"] == "confirmed"
    for status in ("processing", "shipped"):
        moved = await client.post(f"/api/orders/{order['id']}/status", json={"status": status, "reason": "ops"})
        assert moved.status_code == 200 and moved.json()["status"] == status
    backwards = await client.post(f"/api/orders/{order['id']}/status", json={"status": "confirmed"})
    assert backwards.status_code == 409 and backwards.json()["extra"][0]["key"] == "status"
    too_late = await client.post(f"/api/orders/{order['id']}/cancel", json={"reason": "changed my mind"})
    assert too_late.status_code == 409
    unknown_status = await client.post(f"/api/orders/{order['id']}/status", json={"status": "teleported"})
    assert unknown_status.status_code == 400 and unknown_status.json()["extra"][0]["key"] == "status"
    assert await events_about(customer["id"]) == [
        "order.created",
        "order.confirmed",
        "order.status_changed",
        "order.status_changed",
    ]
    # One history row per status entered; the refused changes left none.
    assert await status_history(order["id"]) == [
        (None, "pending", "awaiting stock", "order-service"),
        ("pending", "confirmed", "stock reserved", "order-saga"),
        ("confirmed", "processing", "ops", "order-service"),
        ("processing", "shipped", "ops", "order-service"),
    ]


async def test_cancelling_writes_history_and_an_event(client: AsyncTestClient[Any], customer: dict[str, Any]) -> None:
    product = await stocked_product("7.00")
    order = (await client.post("/api/orders", json=order_body(customer, (product, 2)))).json()
    assert (await settled(client, order["id"]))["status"] == "confirmed"
    cancelled = await client.post(f"/api/orders/{order['id']}/cancel", json={"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_at"] is not None
    again = await client.post(f"/api/orders/{order['id']}/cancel", json={})
    assert again.status_code == 409
    assert await events_about(customer["id"]) == ["order.created", "order.confirmed", "order.cancelled"]
    assert await status_history(order["id"]) == [
        (None, "pending", "awaiting stock", "order-service"),
        ("pending", "confirmed", "stock reserved", "order-saga"),
        ("confirmed", "cancelled", "changed my mind", "order-service"),
    ]


async def test_cancelling_without_a_body_is_recorded_without_a_reason(
    client: AsyncTestClient[Any], customer: dict[str, Any]
) -> None:
    order = (await client.post("/api/orders", json=order_body(customer, (await stocked_product(), 1)))).json()
    assert (await settled(client, order["id"]))["status"] == "confirmed"
    assert (await client.post(f"/api/orders/{order['id']}/cancel")).status_code == 200
    assert (await status_history(order["id"]))[-1] == ("confirmed", "cancelled", None, "order-service")


async def test_unknown_orders_are_404(client: AsyncTestClient[Any]) -> None:
    assert (await client.get(f"/api/orders/{uuid.uuid4()}")).status_code == 404
    assert (await client.post(f"/api/orders/{uuid.uuid4()}/cancel")).status_code == 404


async def test_a_customers_orders_are_listed_newest_first_by_cursor(
    client: AsyncTestClient[Any], customer: dict[str, Any]
) -> None:
    product = await create_product()
    placed = [
        (await client.post("/api/orders", json=order_body(customer, (product, n)))).json()["id"] for n in (1, 2, 3)
    ]
    first = (await client.get("/api/orders", params={"customer_id": customer["id"], "limit": 2})).json()
    second = (
        await client.get(
            "/api/orders", params={"customer_id": customer["id"], "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [o["id"] for o in first["items"] + second["items"]] == placed[::-1]
    assert second["next_cursor"] is None
    bad = await client.get("/api/orders", params={"customer_id": customer["id"], "cursor": "garbage"})
    assert bad.status_code == 400 and bad.json()["extra"][0]["key"] == "cursor"


async def test_a_dependency_that_is_down_is_a_503_naming_it(
    monkeypatch: pytest.MonkeyPatch, customer: dict[str, Any]
) -> None:
    monkeypatch.setenv("CATALOG_URL", "http://127.0.0.1:9")  # nothing listens there: connection refused
    product = {"id": str(uuid.uuid4())}
    async with authorized(AsyncTestClient(app=create_app())) as down:
        response = await down.post("/api/orders", json=order_body(customer, (product, 1)))
    assert response.status_code == 503
    assert response.json()["extra"] == [{"dependency": "catalog"}]
    assert await orders_of(customer["id"]) == 0


async def test_money_is_exact(client: AsyncTestClient[Any], customer: dict[str, Any]) -> None:
    product = await create_product("0.10")
    order = (await client.post("/api/orders", json=order_body(customer, (product, 3)))).json()
    assert Decimal(order["total_amount"]) == Decimal("0.30")


async def test_a_failed_commit_answers_an_error_and_leaves_no_order(
    client: AsyncTestClient[Any], customer: dict[str, Any]
) -> None:
    product = await create_product()
    conn = await connect("order")
    try:
        async with outbox_fails_at_commit(conn, "customer_id", customer["id"]):
            response = await client.post("/api/orders", json=order_body(customer, (product, 1)))
    finally:
        await conn.close()
    assert response.status_code >= 500, response.text
    assert "outbox refused" not in response.text
    assert await orders_of(customer["id"]) == 0
    assert await events_about(customer["id"]) == []
    # The order's data_access_log row is part of the same statement: it goes with the order.
    assert await fetch("order", "SELECT 1 FROM data_access_log WHERE customer_id = $1", customer["id"]) == []


async def test_a_placement_gives_its_connection_back_transactional(
    monkeypatch: pytest.MonkeyPatch, customer: dict[str, Any]
) -> None:
    """The placement runs in autocommit (apps/order/services.py place); on a pool of one connection, the
    cancellation that follows on that same connection must still commit its rows in one transaction."""
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_POOL_MAX_OVERFLOW", "0")
    product = await create_product()
    await set_stock(product["id"], 5)  # reserved, not refused: the saga leaves it to the cancellation
    async with authorized(AsyncTestClient(app=create_app())) as one_connection:
        placed = await one_connection.post("/api/orders", json=order_body(customer, (product, 1)))
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        cancelled = await one_connection.post(f"/api/orders/{order_id}/cancel", json={"reason": "test"})
        assert cancelled.status_code == 200, cancelled.text
    rows = await fetch(
        "order",
        "SELECT o.xmin::text AS order_tx, h.xmin::text AS history_tx, e.xmin::text AS event_tx FROM orders o "
        "JOIN order_status_history h ON h.order_id = o.id AND h.status_to = 'cancelled' "
        "JOIN event_store e ON e.aggregate_id = o.id AND e.event_type = 'order.cancelled' WHERE o.id = $1",
        uuid.UUID(order_id),
    )
    assert len(rows) == 1 and rows[0]["order_tx"] == rows[0]["history_tx"] == rows[0]["event_tx"]
