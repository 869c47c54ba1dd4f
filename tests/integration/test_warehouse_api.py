"""The warehouse API in-process against the real warehouse database: stock levels, reservations, bad input.

Every test uses its own product ids (and warehouses), so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apps.warehouse.app import create_app
from apps.warehouse.rules import DEFAULT_WAREHOUSE_ID, MAX_QUANTITY
from tests.support.db import db_fixture
from tests.support.http import api_client, authorized, create_product, service_url

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Litestar]
DEFAULT = str(DEFAULT_WAREHOUSE_ID)


@pytest.fixture(scope="module")
async def client(stack: None) -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


db = db_fixture("warehouse")


def new_product() -> str:
    """An id the catalog never had: its stock reads as zeros, and setting it is a 422."""
    return str(uuid.uuid4())


async def catalog_product() -> str:
    """A product the catalog has (created through its API): only such a product's stock can be set."""
    return str((await create_product())["id"])


async def new_warehouse(db: asyncpg.Connection) -> str:
    warehouse_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO warehouses (id, code, name) VALUES ($1, $2, 'Test warehouse')",
        warehouse_id,
        f"T-{warehouse_id.hex[:12]}",
    )
    return str(warehouse_id)


async def put_stock(client: Client, product_id: str, quantity: int, **extra: Any) -> dict[str, Any]:
    response = await client.put(f"/api/inventory/{product_id}", json={"quantity": quantity, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stock_rows(db: asyncpg.Connection, product_id: str) -> list[tuple[str, int, int]]:
    rows = await db.fetch(
        "SELECT warehouse_id, on_hand, reserved FROM stock_levels WHERE product_id = $1 ORDER BY warehouse_id",
        uuid.UUID(product_id),
    )
    return [(str(r["warehouse_id"]), r["on_hand"], r["reserved"]) for r in rows]


def field_errors(response: Any) -> dict[str, str]:
    """key -> message of a 400's ``extra``."""
    return {entry.get("key"): entry["message"] for entry in response.json().get("extra", [])}


# --- stock levels ---------------------------------------------------------------------------------


async def test_put_sets_on_hand_in_the_default_warehouse_and_get_reads_it(
    client: Client, db: asyncpg.Connection
) -> None:
    product_id = await catalog_product()

    body = await put_stock(client, product_id, 7)

    assert body == {"product_id": product_id, "warehouse_id": DEFAULT, "on_hand": 7, "reserved": 0, "available": 7}
    response = await client.get(f"/api/inventory/{product_id}")
    assert response.status_code == 200
    assert response.json() == {
        "product_id": product_id,
        "on_hand": 7,
        "reserved": 0,
        "available": 7,
        "warehouses": [{"warehouse_id": DEFAULT, "on_hand": 7, "reserved": 0, "available": 7}],
    }
    assert await stock_rows(db, product_id) == [(DEFAULT, 7, 0)]


async def test_put_replaces_on_hand_rather_than_adding_to_it(client: Client, db: asyncpg.Connection) -> None:
    product_id = await catalog_product()
    await put_stock(client, product_id, 7)
    assert (await put_stock(client, product_id, 3))["on_hand"] == 3
    assert (await put_stock(client, product_id, 0))["available"] == 0
    assert await stock_rows(db, product_id) == [(DEFAULT, 0, 0)]


async def test_unknown_product_reads_as_zero_stock_not_404(client: Client) -> None:
    product_id = new_product()
    response = await client.get(f"/api/inventory/{product_id}")
    assert response.status_code == 200
    assert response.json() == {"product_id": product_id, "on_hand": 0, "reserved": 0, "available": 0, "warehouses": []}


async def test_get_sums_every_warehouse(client: Client, db: asyncpg.Connection) -> None:
    product_id = await catalog_product()
    other = await new_warehouse(db)
    await put_stock(client, product_id, 4)
    assert (await put_stock(client, product_id, 6, warehouse_id=other))["warehouse_id"] == other
    await db.execute(
        "UPDATE stock_levels SET reserved = 2 WHERE product_id = $1 AND warehouse_id = $2",
        uuid.UUID(product_id),
        uuid.UUID(other),
    )

    stock = (await client.get(f"/api/inventory/{product_id}")).json()

    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 2, 8)
    assert {w["warehouse_id"]: (w["on_hand"], w["reserved"], w["available"]) for w in stock["warehouses"]} == {
        DEFAULT: (4, 0, 4),
        other: (6, 2, 4),
    }


async def test_on_hand_below_reserved_is_409_and_changes_nothing(client: Client, db: asyncpg.Connection) -> None:
    product_id = await catalog_product()
    await put_stock(client, product_id, 10)
    await db.execute("UPDATE stock_levels SET reserved = 6 WHERE product_id = $1", uuid.UUID(product_id))

    response = await client.put(f"/api/inventory/{product_id}", json={"quantity": 5})

    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "6 units are reserved" in detail
    assert "UPDATE" not in response.text and "stock_levels" not in response.text
    assert await stock_rows(db, product_id) == [(DEFAULT, 10, 6)]
    # Exactly what is reserved is allowed: available becomes 0, never negative.
    assert await put_stock(client, product_id, 6) == {
        "product_id": product_id,
        "warehouse_id": DEFAULT,
        "on_hand": 6,
        "reserved": 6,
        "available": 0,
    }


async def test_setting_stock_writes_no_event(client: Client, db: asyncpg.Connection) -> None:
    product_id = await catalog_product()
    await put_stock(client, product_id, 5)
    count = await db.fetchval("SELECT count(*) FROM event_store WHERE event_data::text LIKE $1", f"%{product_id}%")
    assert count == 0


async def test_concurrent_puts_of_one_product_leave_one_of_the_values(client: Client, db: asyncpg.Connection) -> None:
    product_id = await catalog_product()
    quantities = list(range(1, 11))
    responses = await asyncio.gather(
        *(client.put(f"/api/inventory/{product_id}", json={"quantity": q}) for q in quantities)
    )
    assert [r.status_code for r in responses] == [200] * len(quantities)
    [(warehouse, on_hand, reserved)] = await stock_rows(db, product_id)
    assert (warehouse, reserved) == (DEFAULT, 0)
    assert on_hand in quantities


# --- reservations ---------------------------------------------------------------------------------


async def test_an_order_without_a_reservation_has_an_empty_list(client: Client) -> None:
    response = await client.get("/api/reservations", params={"order_id": str(uuid.uuid4())})
    assert response.status_code == 200
    assert response.json() == []


async def test_a_malformed_order_id_is_400_naming_it(client: Client) -> None:
    response = await client.get("/api/reservations", params={"order_id": "order-1"})
    assert response.status_code == 400, response.text
    assert "order_id" in field_errors(response), response.text


async def test_a_missing_order_id_is_400_naming_it(client: Client) -> None:
    response = await client.get("/api/reservations")
    assert response.status_code == 400, response.text
    assert "order_id" in response.json()["detail"]


# --- bad input: a 400 naming the field, and nothing written ---------------------------------------

BAD_PUTS: list[tuple[str, Any, str]] = [
    ("negative", {"quantity": -1}, "quantity"),
    ("over the maximum", {"quantity": MAX_QUANTITY + 1}, "quantity"),
    ("a fraction", {"quantity": 1.5}, "quantity"),
    ("a string", {"quantity": "ten"}, "quantity"),
    ("a boolean", {"quantity": True}, "quantity"),
    ("null", {"quantity": None}, "quantity"),
    ("missing", {}, "quantity"),
    ("warehouse not a uuid", {"quantity": 1, "warehouse_id": "main"}, "warehouse_id"),
    ("unknown field", {"quantity": 1, "qty": 2}, "qty"),
    ("an array", [1], "body"),
]


@pytest.mark.parametrize(("body", "key"), [(b, k) for _, b, k in BAD_PUTS], ids=[c for c, _, _ in BAD_PUTS])
async def test_bad_put_is_400_naming_the_field_and_writes_nothing(
    client: Client, db: asyncpg.Connection, body: Any, key: str
) -> None:
    product_id = new_product()
    response = await client.put(f"/api/inventory/{product_id}", json=body)
    assert response.status_code == 400, response.text
    assert key in field_errors(response), response.text
    assert await stock_rows(db, product_id) == []


async def test_an_unknown_warehouse_is_422_naming_it_and_writes_nothing(client: Client, db: asyncpg.Connection) -> None:
    product_id = await catalog_product()
    response = await client.put(f"/api/inventory/{product_id}", json={"quantity": 1, "warehouse_id": str(uuid.uuid4())})
    assert response.status_code == 422, response.text
    assert "warehouse_id" in field_errors(response), response.text
    assert await stock_rows(db, product_id) == []


async def test_a_product_the_catalog_never_had_is_422_naming_it_and_writes_nothing(
    client: Client, db: asyncpg.Connection
) -> None:
    product_id = new_product()
    response = await client.put(f"/api/inventory/{product_id}", json={"quantity": 1})
    assert response.status_code == 422, response.text
    assert response.json()["extra"] == [
        {"key": "product_id", "source": "path", "message": f"the catalog has no product {product_id}"}
    ]
    assert await stock_rows(db, product_id) == []


async def test_a_deleted_product_is_422_and_writes_nothing(client: Client, db: asyncpg.Connection) -> None:
    product_id = await catalog_product()
    async with api_client() as http:
        deleted = await http.delete(f"{service_url('catalog')}/api/products/{product_id}")
    assert deleted.status_code == 204, deleted.text
    response = await client.put(f"/api/inventory/{product_id}", json={"quantity": 1})
    assert response.status_code == 422, response.text
    assert "product_id" in field_errors(response), response.text
    assert await stock_rows(db, product_id) == []


async def test_a_catalog_that_is_down_is_503_naming_it_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, db: asyncpg.Connection
) -> None:
    monkeypatch.setenv("CATALOG_URL", "http://127.0.0.1:9")  # nothing listens there: connection refused
    product_id = await catalog_product()
    async with authorized(AsyncTestClient(app=create_app())) as no_catalog:
        response = await no_catalog.put(f"/api/inventory/{product_id}", json={"quantity": 1})
        # Reading stock needs no catalog.
        assert (await no_catalog.get(f"/api/inventory/{product_id}")).status_code == 200
    assert response.status_code == 503, response.text
    assert response.json()["extra"] == [{"dependency": "catalog"}]
    assert response.headers["Retry-After"]
    assert await stock_rows(db, product_id) == []


@pytest.mark.parametrize("raw", [b'{"quantity": 1', b""], ids=["malformed", "empty"])
async def test_unreadable_put_bodies_are_400(client: Client, db: asyncpg.Connection, raw: bytes) -> None:
    product_id = new_product()
    response = await client.put(
        f"/api/inventory/{product_id}", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "body" in field_errors(response), response.text
    assert await stock_rows(db, product_id) == []


async def test_a_malformed_product_id_is_not_a_server_error(client: Client) -> None:
    for response in (
        await client.get("/api/inventory/not-a-uuid"),
        await client.put("/api/inventory/not-a-uuid", json={"quantity": 1}),
    ):
        assert response.status_code in (400, 404), response.text


# --- the shared plumbing, seen through the warehouse ----------------------------------------------


async def test_health_ready_and_openapi(client: Client) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).json()["database"] == "ok"
    schema = (await client.get("/schema/openapi.json")).json()
    assert schema["info"]["title"] == "warehouse service"
    assert {"/api/inventory/{product_id}", "/api/reservations"} <= set(schema["paths"])


async def test_database_outage_is_503_never_500(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: every connection attempt is refused at once.
    monkeypatch.setenv("WAREHOUSE_DATABASE_URL", "postgresql+asyncpg://warehouse_svc:x@127.0.0.1:1/warehouse_db")
    async with authorized(AsyncTestClient(app=create_app())) as down:
        assert (await down.get("/health")).status_code == 200
        for response in (
            await down.put(f"/api/inventory/{await catalog_product()}", json={"quantity": 1}),
            await down.get(f"/api/inventory/{new_product()}"),
            await down.get("/api/reservations", params={"order_id": str(uuid.uuid4())}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
            assert "127.0.0.1" not in response.text
