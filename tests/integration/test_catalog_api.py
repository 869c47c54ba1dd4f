"""The catalog API in-process against the real catalog database: behaviour, bad input, outages.

Every test makes its own skus and ids, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apps.catalog.app import create_app
from apps.common.http import MAX_BODY_BYTES
from tests.support.db import db_fixture
from tests.support.http import authorized

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
async def client(stack: None) -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


db = db_fixture("catalog")


def new_sku() -> str:
    return f"T-{uuid.uuid4()}"


def product_body(**overrides: Any) -> dict[str, Any]:
    return {"sku": new_sku(), "name": "Red shirt", "price": "19.90", **overrides}


async def create(client: Client, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/products", json=product_body(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def products_with_sku(db: asyncpg.Connection, sku: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM products WHERE sku = $1", sku))


async def events_of(db: asyncpg.Connection, product_id: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT event_type, event_version, schema_version, aggregate_type, event_data "
            "FROM event_store WHERE aggregate_id = $1 ORDER BY event_version",
            uuid.UUID(product_id),
        )
    )


async def events_with_sku(db: asyncpg.Connection, sku: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM event_store WHERE event_data->>'sku' = $1", sku))


def field_errors(response: Any) -> dict[str, str]:
    """key -> message of a 400's ``extra``."""
    return {entry.get("key"): entry["message"] for entry in response.json().get("extra", [])}


# --- create and read ------------------------------------------------------------------------------


async def test_create_answers_201_with_the_product_and_writes_product_created(
    client: Client, db: asyncpg.Connection
) -> None:
    category_id = str(uuid.uuid4())
    body = product_body(price="19.9", currency="EUR", description="cotton", category_id=category_id)

    response = await client.post("/api/products", json=body)

    assert response.status_code == 201, response.text
    product = response.json()
    assert set(product) == {
        "id",
        "sku",
        "name",
        "price",
        "currency",
        "status",
        "description",
        "category_id",
        "created_at",
        "updated_at",
    }
    assert product["sku"] == body["sku"]
    assert product["price"] == "19.90"  # money is a decimal string with its cents
    assert (product["currency"], product["status"], product["category_id"]) == ("EUR", "active", category_id)
    row = await db.fetchrow("SELECT price, currency, status FROM products WHERE id = $1", uuid.UUID(product["id"]))
    assert row is not None
    assert (row["price"], row["currency"], row["status"]) == (Decimal("19.90"), "EUR", "active")
    [event] = await events_of(db, product["id"])
    assert (event["event_type"], event["event_version"], event["schema_version"]) == ("product.created", 1, 1)
    assert event["aggregate_type"] == "product"
    payload = json.loads(event["event_data"])
    assert payload["price"] == "19.90"
    assert {k: payload[k] for k in ("id", "sku", "name", "currency", "status", "category_id")} == {
        "id": product["id"],
        "sku": body["sku"],
        "name": "Red shirt",
        "currency": "EUR",
        "status": "active",
        "category_id": category_id,
    }


async def test_currency_defaults_to_usd_and_a_json_number_price_is_accepted(client: Client) -> None:
    product = await create(client, price=12.5)
    assert (product["price"], product["currency"]) == ("12.50", "USD")


async def test_get_returns_the_created_product(client: Client) -> None:
    product = await create(client)
    response = await client.get(f"/api/products/{product['id']}")
    assert response.status_code == 200
    assert response.json() == product


async def test_unknown_product_is_404(client: Client) -> None:
    missing = uuid.uuid4()
    for response in (
        await client.get(f"/api/products/{missing}"),
        await client.patch(f"/api/products/{missing}", json={"name": "x"}),
        await client.delete(f"/api/products/{missing}"),
    ):
        assert response.status_code == 404
        assert str(missing) in response.json()["detail"]


async def test_a_taken_sku_is_409_and_writes_nothing(client: Client, db: asyncpg.Connection) -> None:
    first = await create(client)
    response = await client.post("/api/products", json=product_body(sku=first["sku"], name="Other"))
    assert response.status_code == 409
    assert first["sku"] in response.json()["detail"]
    assert "INSERT" not in response.text and "SELECT" not in response.text
    assert await products_with_sku(db, first["sku"]) == 1
    assert await events_with_sku(db, first["sku"]) == 1


async def test_concurrent_creates_of_one_sku_give_one_201_and_409s(client: Client, db: asyncpg.Connection) -> None:
    body = product_body()
    responses = await asyncio.gather(*(client.post("/api/products", json=body) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert await products_with_sku(db, body["sku"]) == 1
    assert await events_with_sku(db, body["sku"]) == 1


# --- update and delete ----------------------------------------------------------------------------


async def test_patch_changes_only_the_given_fields_and_writes_product_updated(
    client: Client, db: asyncpg.Connection
) -> None:
    product = await create(client, description="old")
    response = await client.patch(f"/api/products/{product['id']}", json={"price": "21", "status": "inactive"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["price"], updated["status"]) == ("21.00", "inactive")
    assert (updated["name"], updated["description"], updated["sku"]) == ("Red shirt", "old", product["sku"])
    assert updated["updated_at"] > product["updated_at"]

    events = await events_of(db, product["id"])
    assert [(e["event_type"], e["event_version"]) for e in events] == [("product.created", 1), ("product.updated", 2)]
    payload = json.loads(events[1]["event_data"])
    assert payload["changed"] == ["price", "status"]
    assert (payload["price"], payload["status"], payload["name"]) == ("21.00", "inactive", "Red shirt")


async def test_patch_null_clears_an_optional_field(client: Client) -> None:
    product = await create(client, description="soon gone", category_id=str(uuid.uuid4()))
    response = await client.patch(f"/api/products/{product['id']}", json={"description": None, "category_id": None})
    assert response.status_code == 200
    assert (response.json()["description"], response.json()["category_id"]) == (None, None)


async def test_patch_without_a_real_change_writes_no_event(client: Client, db: asyncpg.Connection) -> None:
    product = await create(client)
    for body in ({}, {"name": "Red shirt", "price": "19.90"}):
        response = await client.patch(f"/api/products/{product['id']}", json=body)
        assert response.status_code == 200
        assert response.json() == product
    assert len(await events_of(db, product["id"])) == 1


async def test_delete_is_soft_and_hides_the_product(client: Client, db: asyncpg.Connection) -> None:
    product = await create(client)

    response = await client.delete(f"/api/products/{product['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/api/products/{product['id']}")).status_code == 404
    assert (await client.delete(f"/api/products/{product['id']}")).status_code == 404
    row = await db.fetchrow("SELECT status, deleted_at FROM products WHERE id = $1", uuid.UUID(product["id"]))
    assert row is not None
    assert row["status"] == "deleted"
    assert row["deleted_at"] is not None
    events = await events_of(db, product["id"])
    assert [e["event_type"] for e in events] == ["product.created", "product.deleted"]
    assert json.loads(events[1]["event_data"])["sku"] == product["sku"]
    # The sku stays taken: orders already refer to it.
    again = await client.post("/api/products", json=product_body(sku=product["sku"]))
    assert again.status_code == 409


# --- list and validate ----------------------------------------------------------------------------


async def test_list_walks_every_page_newest_first_with_the_cursor(client: Client) -> None:
    category_id = str(uuid.uuid4())  # a category of our own: no other test's rows in these pages
    created = [(await create(client, category_id=category_id))["id"] for _ in range(5)]

    seen: list[str] = []
    pages: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {
            "limit": 2,
            "category_id": category_id,
            **({"cursor": cursor} if cursor else {}),
        }
        response = await client.get("/api/products", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        seen += [item["id"] for item in page["items"]]
        pages.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == [2, 2, 1]
    assert seen == list(reversed(created))


async def test_list_leaves_out_deleted_products(client: Client) -> None:
    category_id = str(uuid.uuid4())
    kept = await create(client, category_id=category_id)
    gone = await create(client, category_id=category_id)
    assert (await client.delete(f"/api/products/{gone['id']}")).status_code == 204

    response = await client.get("/api/products", params={"category_id": category_id})

    assert [item["id"] for item in response.json()["items"]] == [kept["id"]]
    assert response.json()["next_cursor"] is None


async def test_list_without_parameters_answers_a_page(client: Client) -> None:
    await create(client)
    response = await client.get("/api/products", params={"cursor": ""})
    assert response.status_code == 200
    assert 1 <= len(response.json()["items"]) <= 20


@pytest.mark.parametrize(
    ("params", "key"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "ten"}, "limit"), ({"cursor": "zzz"}, "cursor")],
)
async def test_bad_list_parameters_are_400_naming_the_parameter(
    client: Client, params: dict[str, Any], key: str
) -> None:
    response = await client.get("/api/products", params=params)
    assert response.status_code == 400
    assert key in field_errors(response)


async def test_validate_splits_sellable_products_from_the_rest(client: Client) -> None:
    active = await create(client, price="5.5")
    inactive = await create(client)
    deleted = await create(client)
    await client.patch(f"/api/products/{inactive['id']}", json={"status": "inactive"})
    await client.delete(f"/api/products/{deleted['id']}")
    unknown = str(uuid.uuid4())

    response = await client.post(
        "/api/products/validate",
        json={"product_ids": [unknown, active["id"], inactive["id"], active["id"], deleted["id"]]},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": [{"id": active["id"], "sku": active["sku"], "name": "Red shirt", "price": "5.50", "currency": "USD"}],
        "invalid": [unknown, inactive["id"], deleted["id"]],
    }


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"product_ids": ["not-a-uuid"]}, "product_ids[0]"),
        ({"product_ids": []}, "product_ids"),
        ({"product_ids": "abc"}, "product_ids"),
        ({}, "product_ids"),
    ],
)
async def test_bad_validate_requests_are_400_naming_the_field(client: Client, body: dict[str, Any], key: str) -> None:
    response = await client.post("/api/products/validate", json=body)
    assert response.status_code == 400
    assert key in field_errors(response)


# --- bad input: a 4xx naming the field, and nothing written ---------------------------------------


BAD_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("negative price", {"price": "-1.00"}, "price"),
    ("three decimals", {"price": "1.999"}, "price"),
    ("price over NUMERIC(10,2)", {"price": "100000000"}, "price"),
    ("price NaN", {"price": "NaN"}, "price"),
    ("price not a number", {"price": "ten"}, "price"),
    ("price a boolean", {"price": True}, "price"),
    ("price null", {"price": None}, "price"),
    ("lowercase currency", {"currency": "usd"}, "currency"),
    ("four-letter currency", {"currency": "USDT"}, "currency"),
    ("currency with a newline", {"currency": "USD\n"}, "currency"),
    ("name a number", {"name": 5}, "name"),
    ("blank name", {"name": "   "}, "name"),
    ("name too long", {"name": "x" * 501}, "name"),
    ("sku with a space", {"sku_suffix": " x"}, "sku"),
    ("category not a uuid", {"category_id": "books"}, "category_id"),
    ("unknown field", {"prcie": "1.00"}, "prcie"),
]


@pytest.mark.parametrize(("overrides", "key"), [(o, k) for _, o, k in BAD_CREATES], ids=[c for c, _, _ in BAD_CREATES])
async def test_bad_create_is_400_naming_the_field_and_writes_nothing(
    client: Client, db: asyncpg.Connection, overrides: dict[str, Any], key: str
) -> None:
    body = product_body()
    if suffix := overrides.pop("sku_suffix", None):
        body["sku"] += suffix
    body.update(overrides)

    response = await client.post("/api/products", json=body)

    assert response.status_code == 400, response.text
    assert key in field_errors(response), response.text
    assert await products_with_sku(db, body["sku"]) == 0
    assert await events_with_sku(db, body["sku"]) == 0


async def test_missing_required_field_is_400_naming_it(client: Client) -> None:
    body = product_body()
    del body["price"]
    response = await client.post("/api/products", json=body)
    assert response.status_code == 400
    assert "price" in response.text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"sku": "%s", "name": "x", "price": "1.00"', 400),  # malformed JSON
        (b"", 400),  # no body at all
        (b'["%s"]', 400),  # not an object
        (b'{"sku": "%s", "name": "' + b"x" * MAX_BODY_BYTES + b'", "price": "1.00"}', 413),
    ],
    ids=["malformed", "empty", "array", "oversized"],
)
async def test_unreadable_bodies_are_refused_and_write_nothing(
    client: Client, db: asyncpg.Connection, raw: bytes, status: int
) -> None:
    sku = new_sku()
    content = raw.replace(b"%s", sku.encode())
    response = await client.post("/api/products", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if status == 400:
        assert "body" in field_errors(response), response.text
    assert await products_with_sku(db, sku) == 0


async def test_bad_patch_is_400_naming_the_field_and_changes_nothing(client: Client, db: asyncpg.Connection) -> None:
    product = await create(client)
    for body, key in [
        ({"price": "-3"}, "price"),
        ({"price": "3.001"}, "price"),
        ({"currency": "eur"}, "currency"),
        ({"name": None}, "name"),
        ({"status": "deleted"}, "status"),
        ({"sku": "NEW-SKU"}, "sku"),
    ]:
        response = await client.patch(f"/api/products/{product['id']}", json=body)
        assert response.status_code == 400, (body, response.text)
        assert key in field_errors(response), (body, response.text)
    assert (await client.get(f"/api/products/{product['id']}")).json() == product
    assert len(await events_of(db, product["id"])) == 1


# A price valid alone with more decimals than its currency has: each field is fine, together they contradict
# (a 100.50 JPY price reached the card provider as 101 yen).
MORE_DECIMALS_THAN_THE_CURRENCY: list[dict[str, Any]] = [
    {"price": "100.50", "currency": "JPY"},
    {"price": 100.5, "currency": "JPY"},
    {"price": 12.345, "currency": "EUR"},  # a number was rounded to the cent: 12.34
    {"price": 1.2345, "currency": "KWD"},  # the columns hold two decimals, a dinar's third too
    {"price": 0.001, "currency": "USD"},
    {"price": "0.01", "currency": "KRW"},
    {"price": "9.9", "currency": "CLP"},
]


@pytest.mark.parametrize("overrides", MORE_DECIMALS_THAN_THE_CURRENCY, ids=lambda o: f"{o['price']!r} {o['currency']}")
async def test_a_price_with_more_decimals_than_its_currency_is_422_naming_price(
    client: Client, db: asyncpg.Connection, overrides: dict[str, Any]
) -> None:
    body = product_body(**overrides)
    response = await client.post("/api/products", json=body)
    assert response.status_code == 422, response.text
    assert "price" in field_errors(response), response.text
    assert overrides["currency"] in field_errors(response)["price"]
    assert await products_with_sku(db, body["sku"]) == 0


async def test_whole_units_of_a_zero_decimal_currency_and_cents_of_a_three_decimal_one_are_taken(
    client: Client,
) -> None:
    # A client's float arithmetic (57 * 0.01 is 0.5700000000000001) is the cent amount it meant.
    assert (await create(client, price=57 * 0.01))["price"] == "0.57"
    assert (await create(client, price="100", currency="JPY"))["price"] == "100.00"
    assert (await create(client, price=250.0, currency="KRW"))["price"] == "250.00"
    # The columns hold two decimals: a dinar is priced in hundredths here (10.25 KWD, 10250 fils).
    assert (await create(client, price="10.25", currency="KWD"))["price"] == "10.25"


async def test_a_patch_that_leaves_more_decimals_than_the_currency_has_is_422_and_changes_nothing(
    client: Client, db: asyncpg.Connection
) -> None:
    usd = await create(client, price="19.90")
    yen = await create(client, price="100", currency="JPY")
    for product, body, key in [
        (usd, {"currency": "JPY"}, "currency"),  # the stored 19.90 would become 19.90 JPY
        (usd, {"currency": "JPY", "price": "19.5"}, "price"),
        (yen, {"price": "100.5"}, "price"),
        (yen, {"price": 99.99}, "price"),
    ]:
        response = await client.patch(f"/api/products/{product['id']}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert key in field_errors(response), (body, response.text)
        assert (await client.get(f"/api/products/{product['id']}")).json() == product
        assert len(await events_of(db, product["id"])) == 1
    both = await client.patch(f"/api/products/{usd['id']}", json={"currency": "JPY", "price": "2000"})
    assert both.status_code == 200, both.text
    assert (both.json()["price"], both.json()["currency"]) == ("2000.00", "JPY")


async def test_a_malformed_product_id_is_not_a_server_error(client: Client) -> None:
    response = await client.get("/api/products/not-a-uuid")
    assert response.status_code in (400, 404)


# --- the shared plumbing, seen through the catalog ------------------------------------------------


async def test_health_ready_metrics_and_openapi(client: Client) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "commerce_requests_total" in metrics.text
    schema = (await client.get("/schema/openapi.json")).json()
    assert schema["info"]["title"] == "catalog service"
    assert "/api/products/validate" in schema["paths"]
    assert (await client.get("/schema/swagger")).status_code == 200


async def test_database_outage_is_503_never_500_and_health_stays_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1: every connection attempt is refused at once.
    monkeypatch.setenv("CATALOG_DATABASE_URL", "postgresql+asyncpg://catalog_svc:x@127.0.0.1:1/catalog_db")
    async with authorized(AsyncTestClient(app=create_app())) as down:
        assert (await down.get("/health")).status_code == 200
        ready = await down.get("/ready")
        assert ready.status_code == 503
        assert "ConnectionRefusedError" in ready.json()["database"]
        for response in (
            await down.post("/api/products", json=product_body()),
            await down.get(f"/api/products/{uuid.uuid4()}"),
            await down.get("/api/products"),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
            assert "127.0.0.1" not in response.text
