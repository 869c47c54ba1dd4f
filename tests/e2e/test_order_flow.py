"""End to end through the real stack: HTTP in, Debezium and Kafka in the middle, projections out.

Customer stats, warehouse reservations and analytics are read through their own HTTP APIs; every wait
polls with a deadline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from apps.common.topology import topic_for
from tests.support.http import api_client, create_customer, create_product, service_url, set_stock
from tests.support.kafka import TopicTail
from tests.support.orders import eventually, in_currency

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        yield client


async def place(
    http: httpx.AsyncClient, customer: dict[str, Any], *lines: tuple[dict[str, Any], int]
) -> dict[str, Any]:
    body = {"customer_id": customer["id"], "items": [{"product_id": p["id"], "quantity": q} for p, q in lines]}
    response = await http.post(f"{service_url('order')}/api/orders", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def get_json(http: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await http.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def becomes(probe: Callable[[], Awaitable[Any]], expected: Any) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await probe() == expected)

    return check


async def test_orders_flow_into_customer_stats_reservations_and_analytics(http: httpx.AsyncClient) -> None:
    customer = await create_customer()
    shirt, mug = await create_product("25.00"), await create_product("7.50")
    await set_stock(shirt["id"], 10)
    await set_stock(mug["id"], 10)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    daily_before = await _daily(http, today)

    first = await place(http, customer, (shirt, 2), (mug, 1))  # 57.50
    second = await place(http, customer, (mug, 4))  # 30.00

    stats_url = f"{service_url('customer')}/api/customers/{customer['id']}/stats"

    async def stats() -> tuple[int, int, str]:
        body = await get_json(http, stats_url)
        return body["orders_count"], body["cancelled_count"], in_currency(body)["total_spent"]

    await eventually(becomes(stats, (2, 0, "87.50")), what="customer stats after two orders")
    await eventually(becomes(lambda: _reservation_status(http, first["id"]), "reserved"), what="first reserved")
    await eventually(becomes(lambda: _reservation_status(http, second["id"]), "reserved"), what="second reserved")
    assert await _stock(http, shirt["id"]) == (10, 2, 8)
    assert await _stock(http, mug["id"]) == (10, 5, 5)

    async def shirt_sales() -> tuple[int, str] | None:
        return await _product_sales(http, shirt["id"])

    await eventually(becomes(shirt_sales, (2, "50.00")), what="analytics per product")
    daily_after = await _daily(http, today)
    assert daily_after["orders"] - daily_before["orders"] >= 2
    assert Decimal(daily_after["revenue"]) - Decimal(daily_before["revenue"]) >= Decimal("87.50")

    # Cancelling releases the reservation and shows in the stats.
    cancelled = await http.post(f"{service_url('order')}/api/orders/{first['id']}/cancel", json={"reason": "e2e"})
    assert cancelled.status_code == 200, cancelled.text
    await eventually(becomes(stats, (2, 1, "30.00")), what="customer stats after the cancellation")
    await eventually(becomes(lambda: _reservation_status(http, first["id"]), "released"), what="reservation released")
    assert await _stock(http, shirt["id"]) == (10, 0, 10)
    assert await _stock(http, mug["id"]) == (10, 4, 6)
    await eventually(becomes(shirt_sales, (0, "0.00")), what="analytics after the cancellation")


async def test_fifty_concurrent_orders_for_ten_units_reserve_exactly_ten(http: httpx.AsyncClient) -> None:
    product = await create_product("1.00")
    await set_stock(product["id"], 10)
    customers = await asyncio.gather(*(create_customer() for _ in range(50)))
    inventory_events = TopicTail(topic_for("inventory"))
    orders = await asyncio.gather(*(place(http, c, (product, 1)) for c in customers))
    order_ids = {o["id"] for o in orders}

    async def settled() -> bool:
        statuses = await asyncio.gather(*(_reservation_status(http, order_id) for order_id in order_ids))
        return all(s in {"reserved", "failed"} for s in statuses)

    await eventually(settled, within=120, what="every order reserved or refused")
    statuses = await asyncio.gather(*(_reservation_status(http, order_id) for order_id in order_ids))
    assert statuses.count("reserved") == 10
    assert statuses.count("failed") == 40
    assert await _stock(http, product["id"]) == (10, 10, 0)

    def all_events_seen(seen: list[Any]) -> bool:
        return len({r.key for r in seen if r.key in order_ids}) == 50

    records = await asyncio.to_thread(inventory_events.read_until, all_events_seen, 120)
    inventory_events.close()
    kinds = [r.headers["event_type"] for r in records if r.key in order_ids]
    assert kinds.count("inventory.reserved") == 10
    assert kinds.count("inventory.reservation_failed") == 40


async def _reservation_status(http: httpx.AsyncClient, order_id: str) -> str | None:
    body = await get_json(http, f"{service_url('warehouse')}/api/reservations", order_id=order_id)
    items = body if isinstance(body, list) else body.get("items", [])
    return str(items[0]["status"]) if items else None


async def _stock(http: httpx.AsyncClient, product_id: str) -> tuple[int, int, int]:
    body = await get_json(http, f"{service_url('warehouse')}/api/inventory/{product_id}")
    return body["on_hand"], body["reserved"], body["available"]


async def _product_sales(http: httpx.AsyncClient, product_id: str) -> tuple[int, str] | None:
    rows = await get_json(http, f"{service_url('analytics')}/api/analytics/products/{product_id}")
    return (rows[0]["units"], rows[0]["revenue"]) if rows else None


async def _daily(http: httpx.AsyncClient, day: str) -> dict[str, Any]:
    rows = await get_json(http, f"{service_url('analytics')}/api/analytics/sales/daily", **{"from": day, "to": day})
    usd = [r for r in rows if r.get("currency", "USD") == "USD"]
    return usd[0] if usd else {"orders": 0, "revenue": "0", "cancellations": 0}
