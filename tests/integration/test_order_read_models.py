"""The order service's read models of customers and products (apps/order/known.py), fed by the
order-references consumer group, and their staleness rule: a local price is paid only while its row is at
most ORDER_PRICE_MAX_AGE_S old; anything missing, too old or not sellable here is asked of the services.

The order service runs in-process; a dependency "down" is a URL nobody listens on, so an order that
succeeds then was answered from the read models alone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from apps.common.settings import forget_settings
from apps.order.app import create_app
from apps.order.known import is_fresh
from tests.support.db import fetch
from tests.support.http import api_client, authorized, create_customer, create_product, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

NOBODY = "http://127.0.0.1:9"  # connection refused


@asynccontextmanager
async def order_service(monkeypatch: pytest.MonkeyPatch, **down: bool) -> AsyncIterator[AsyncTestClient[Any]]:
    """The order app, with the dependencies named in ``down`` unreachable."""
    with monkeypatch.context() as patch:
        for name in ("catalog", "customer"):
            if down.get(name):
                patch.setenv(f"{name.upper()}_URL", NOBODY)
        async with authorized(AsyncTestClient(app=create_app())) as client:
            yield client


async def place(client: AsyncTestClient[Any], customer: dict[str, Any], product: dict[str, Any]) -> httpx.Response:
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]}
    return await client.post("/api/orders", json=body)


async def known_product(product_id: str) -> dict[str, Any] | None:
    rows = await fetch(
        "order",
        "SELECT price::text, sellable, version FROM order_known_products WHERE product_id = $1",
        uuid.UUID(product_id),
    )
    return dict(rows[0]) if rows else None


async def until_known(product_id: str, **expected: object) -> None:
    async def applied() -> bool:
        row = await known_product(product_id)
        return row is not None and all(row[k] == v for k, v in expected.items())

    await eventually(applied, within=30, what=f"product {product_id} {expected} in the order read model")


async def until_customer_known(customer_id: str) -> None:
    async def known() -> bool:
        return bool(await fetch("order", "SELECT 1 FROM order_known_customers WHERE customer_id = $1", customer_id))

    await eventually(known, within=30, what=f"customer {customer_id} in the order read model")


async def test_a_customer_registered_just_now_orders_at_once_then_orders_without_the_customer_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer, product = await create_customer(), await create_product("7.00")
    async with order_service(monkeypatch) as client:
        first = await place(client, customer, product)  # before its event may have arrived: the API answers
    assert first.status_code == 201, first.text
    await until_customer_known(customer["id"])
    await until_known(product["id"], version=1)
    monkeypatch.setenv("ORDER_PRICE_MAX_AGE_S", "3600")  # the product's row counts as fresh here
    forget_settings()
    async with order_service(monkeypatch, customer=True, catalog=True) as client:
        second = await place(client, customer, product)
    assert second.status_code == 201, second.text
    assert second.json()["total_amount"] == "14.00"


async def test_a_price_changed_just_now_is_paid_at_most_the_bound_late(monkeypatch: pytest.MonkeyPatch) -> None:
    customer, product = await create_customer(), await create_product("10.00")
    await until_known(product["id"], version=1, price="10.00")
    async with api_client() as http:
        changed = await http.patch(f"{service_url('catalog')}/api/products/{product['id']}", json={"price": "12.00"})
    assert changed.status_code == 200, changed.text
    # A bound of zero: no local row is fresh enough, the catalog prices the order at today's price.
    monkeypatch.setenv("ORDER_PRICE_MAX_AGE_S", "0")
    forget_settings()
    async with order_service(monkeypatch) as client:
        now = await place(client, customer, product)
    assert now.status_code == 201, now.text
    assert now.json()["items"][0]["unit_price"] == "12.00"
    # Past the bound the local row is never used, even with the catalog down: a 503, not an old price.
    async with order_service(monkeypatch, catalog=True) as client:
        refused = await place(client, customer, product)
    assert refused.status_code == 503 and refused.json()["extra"] == [{"dependency": "catalog"}]
    # Once product.updated arrived, the new price is paid from the read model alone.
    await until_known(product["id"], version=2, price="12.00")
    monkeypatch.setenv("ORDER_PRICE_MAX_AGE_S", "3600")
    forget_settings()
    async with order_service(monkeypatch, catalog=True) as client:
        local = await place(client, customer, product)
    assert local.status_code == 201, local.text
    assert local.json()["items"][0]["unit_price"] == "12.00"


async def test_misses_and_withdrawn_products_are_asked_of_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    customer, product = await create_customer(), await create_product("5.00")
    monkeypatch.setenv("ORDER_PRICE_MAX_AGE_S", "3600")
    forget_settings()
    async with order_service(monkeypatch) as client:
        unknown = await place(client, customer, {"id": str(uuid.uuid4())})  # a miss: the catalog says invalid
        assert unknown.status_code == 422 and unknown.json()["extra"][0]["key"] == "items[0].product_id"
        stranger = await place(client, {"id": str(uuid.uuid4())}, product)  # a miss: the customer API says 404
        assert stranger.status_code == 422 and stranger.json()["extra"][0]["key"] == "customer_id"
        await until_known(product["id"], version=1)
        async with api_client() as http:
            gone = await http.delete(f"{service_url('catalog')}/api/products/{product['id']}")
        assert gone.status_code == 204
        await until_known(product["id"], sellable=False)
        withdrawn = await place(client, customer, product)  # not sellable here: the catalog decides
    assert withdrawn.status_code == 422 and withdrawn.json()["extra"][0]["key"] == "items[0].product_id"


async def test_a_row_near_its_age_limit_is_refreshed_behind_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past AHEAD of its limit a row still prices the order, and the catalog is asked in the background, so
    the next orders find it fresh instead of each waiting on that call (apps/order/known.py)."""
    customer, product = await create_customer(), await create_product("3.00")
    await until_known(product["id"], version=1)
    await until_customer_known(customer["id"])
    product_id = uuid.UUID(product["id"])
    aged = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=8)  # fresh for a 10 s limit, past 7 s
    await fetch("order", "UPDATE order_known_products SET confirmed_at = $2 WHERE product_id = $1", product_id, aged)
    monkeypatch.setenv("ORDER_PRICE_MAX_AGE_S", "10")
    forget_settings()

    async def refreshed() -> bool:
        rows = await fetch("order", "SELECT confirmed_at FROM order_known_products WHERE product_id = $1", product_id)
        return bool(rows[0]["confirmed_at"] > aged)

    async with order_service(monkeypatch) as client:
        placed = await place(client, customer, product)
        assert placed.status_code == 201, placed.text
        assert placed.json()["total_amount"] == "6.00"
        await eventually(refreshed, within=10, what="the product's row refreshed ahead of its limit")


async def test_an_order_priced_from_a_guess_is_written_only_if_the_read_models_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a product was read, the next order is priced from those values and placed by one statement that
    checks them against the read models first (apps/order/known.py PLACE_IF_KNOWN): a row changed since, or
    past its age bound, writes nothing, and the order is decided from the rows that statement read."""
    customer, product = await create_customer(), await create_product("4.00")
    await until_known(product["id"], version=1)
    await until_customer_known(customer["id"])
    product_id = uuid.UUID(product["id"])
    monkeypatch.setenv("ORDER_PRICE_MAX_AGE_S", "3600")
    forget_settings()
    sent: list[str] = []
    fetch_rows = asyncpg.Connection.fetch

    async def counted(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> list[Any]:
        sent.append(query)
        rows: list[Any] = await fetch_rows(self, query, *args, **kwargs)
        return rows

    async def placed_with(expected: int) -> httpx.Response:
        sent.clear()
        response = await place(client, customer, product)
        assert len(sent) == expected, sent
        return response

    monkeypatch.setattr(asyncpg.Connection, "fetch", counted)
    async with order_service(monkeypatch, customer=True, catalog=True) as client:
        first = await placed_with(2)  # nothing read of the product yet in this process: lookup, then write
        again = await placed_with(1)  # one round trip: checked and written by one statement
        await fetch(
            "order",
            "UPDATE order_known_products SET price = 5.00, confirmed_at = now() WHERE product_id = $1",
            product_id,
        )
        repriced = await placed_with(2)  # the guess is 4.00, the read model says 5.00: written at 5.00
        await fetch(
            "order",
            "UPDATE order_known_products SET confirmed_at = now() - interval '2 hours' WHERE product_id = $1",
            product_id,
        )
        stale = await placed_with(1)  # as guessed, but too old: never paid, and the catalog is down
    assert [r.status_code for r in (first, again, repriced)] == [201, 201, 201], repriced.text
    assert [r.json()["total_amount"] for r in (first, again, repriced)] == ["8.00", "8.00", "10.00"]
    assert stale.status_code == 503 and stale.json()["extra"] == [{"dependency": "catalog"}]
    rows = await fetch(
        "order", "SELECT total_amount::text FROM orders WHERE customer_id = $1 ORDER BY created_at", customer["id"]
    )
    assert [row["total_amount"] for row in rows] == ["8.00", "8.00", "10.00"]


def test_the_staleness_rule() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    bound = dt.timedelta(seconds=10)
    assert is_fresh(now - dt.timedelta(seconds=10), now, bound)
    assert not is_fresh(now - dt.timedelta(seconds=10, microseconds=1), now, bound)
    assert is_fresh(now + dt.timedelta(seconds=1), now, bound)  # a row stamped by a clock slightly ahead
