"""PATCH and DELETE /api/customers/{id}/addresses/{address_id} on the running customer API (``just restart
customer-api`` loads the tree's code), and what they mean for a checkout started with that address (the
checkout app in this process, which asks the running customer API for saved addresses)."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from apps.checkout.app import create_app as create_checkout_app
from apps.common.fields import MAX_INT_ID
from apps.customer.erasure import anonymised_address_lines
from apps.customer.sealed import ADDRESS_COLUMNS, open_value
from tests.support.checkout import Client, add, checkout_body
from tests.support.db import connect, db_fixture
from tests.support.http import api_client, authorized, create_customer, create_product, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

db = db_fixture("customer")
PARIS = {"type": "shipping", "address_line1": "5 Rue X", "city": "Paris", "country": "FR"}


def as_customer(customer: dict[str, Any]) -> httpx.AsyncClient:
    return api_client("customer", customer_id=customer["id"], base_url=service_url("customer"))


async def saved(customer: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    async with as_customer(customer) as http:
        response = await http.post(f"/api/customers/{customer['id']}/addresses", json={**PARIS, **overrides})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def address_ids(db: asyncpg.Connection, customer: dict[str, Any]) -> list[int]:
    rows = await db.fetch(
        "SELECT id FROM customer_addresses WHERE customer_id = $1 ORDER BY id", uuid.UUID(customer["id"])
    )
    return [row["id"] for row in rows]


async def changes_logged(db: asyncpg.Connection, address_id: int, operation: str = "DELETE") -> list[tuple[str, str]]:
    rows = await db.fetch(
        "SELECT user_id, customer_id FROM data_access_log "
        "WHERE table_name = 'customer_addresses' AND operation = $1 AND record_id = $2",
        operation,
        str(address_id),
    )
    return [(row["user_id"], row["customer_id"]) for row in rows]


async def event_types(db: asyncpg.Connection, customer: dict[str, Any]) -> list[str]:
    events = await db.fetch("SELECT event_type FROM event_store WHERE aggregate_id = $1", uuid.UUID(customer["id"]))
    return [e["event_type"] for e in events]


# -- PATCH ---------------------------------------------------------------------------------------------


async def test_the_owner_changes_an_address_its_lines_sealed_again_logged_and_without_an_event(
    db: asyncpg.Connection,
) -> None:
    customer = await create_customer()
    default, other = await saved(customer, is_default=True), await saved(customer, company="Engines")
    url = f"/api/customers/{customer['id']}/addresses/{other['id']}"
    async with as_customer(customer) as http:
        response = await http.patch(url, json={"city": " Lyon ", "company": None, "is_default": True})
        assert response.status_code == 200, response.text
        changed = response.json()
        assert changed == {
            **other,
            "city": "Lyon",
            "company": None,
            "is_default": True,
            "updated_at": changed["updated_at"],
        }
        assert changed["updated_at"] > other["updated_at"]
        listed = (await http.get(f"/api/customers/{customer['id']}/addresses")).json()
    assert listed == [{**default, "is_default": False, "updated_at": changed["updated_at"]}, changed]
    row = await db.fetchrow("SELECT city, company FROM customer_addresses WHERE id = $1", other["id"])
    assert row["company"] is None and row["city"] != "Lyon", "the new city is sealed, not in clear"
    assert open_value("customer_addresses", "city", other["id"], row["city"]) == "Lyon"
    assert await changes_logged(db, other["id"], "UPDATE") == [(f"customer:{customer['id']}", customer["id"])]
    assert await event_types(db, customer) == ["customer.registered"], "addresses never enter an event"


async def test_a_patch_that_changes_nothing_writes_nothing(db: asyncpg.Connection) -> None:
    customer = await create_customer()
    address = await saved(customer)
    async with as_customer(customer) as http:
        for body in ({}, {"city": "Paris", "type": "shipping", "is_default": False}):
            response = await http.patch(f"/api/customers/{customer['id']}/addresses/{address['id']}", json=body)
            assert (response.status_code, response.json()) == (200, address)
    assert await changes_logged(db, address["id"], "UPDATE") == []


BAD_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"city": "  "}, "city"),
    ({"country": "de"}, "country"),
    ({"country": "XX"}, "country"),
    ({"type": "home"}, "type"),
    ({"address_line1": None}, "address_line1"),
    ({"postal_code": "10115;"}, "postal_code"),
    ({"is_default": "yes"}, "is_default"),
    ({"zip": "10115"}, "zip"),
]


@pytest.mark.parametrize(("body", "key"), BAD_PATCHES, ids=[k for _, k in BAD_PATCHES])
async def test_a_bad_patch_is_a_400_naming_the_field_and_changes_nothing(
    db: asyncpg.Connection, body: dict[str, Any], key: str
) -> None:
    customer = await create_customer()
    address = await saved(customer)
    url = f"/api/customers/{customer['id']}/addresses"
    async with as_customer(customer) as http:
        response = await http.patch(f"{url}/{address['id']}", json=body)
        assert response.status_code == 400, response.text
        assert key in [e.get("key") for e in response.json()["extra"]], response.text
        assert (await http.get(url)).json() == [address]


async def test_another_customers_address_is_a_404_to_patch_and_support_may_not(db: asyncpg.Connection) -> None:
    owner, other = await create_customer(), await create_customer()
    address = await saved(owner)
    async with as_customer(other) as http:
        for url in (
            f"/api/customers/{other['id']}/addresses/{address['id']}",
            f"/api/customers/{owner['id']}/addresses/{address['id']}",
        ):
            response = await http.patch(url, json={"city": "Lyon"})
            assert response.status_code == 404, response.text
    async with api_client("staff", base_url=service_url("customer")) as http:
        refused = await http.patch(f"/api/customers/{owner['id']}/addresses/{address['id']}", json={"city": "Lyon"})
        assert refused.status_code == 403, "support removes an address on request, but writes none"
    async with as_customer(owner) as http:
        assert (await http.get(f"/api/customers/{owner['id']}/addresses")).json() == [address]


# -- DELETE --------------------------------------------------------------------------------------------


async def test_the_owner_deletes_an_address_for_good_logged_and_without_an_event(db: asyncpg.Connection) -> None:
    customer = await create_customer()
    gone, kept = await saved(customer, is_default=True), await saved(customer, city="Lyon")
    url = f"/api/customers/{customer['id']}/addresses"
    async with as_customer(customer) as http:
        response = await http.delete(f"{url}/{gone['id']}")
        assert (response.status_code, response.content) == (204, b"")
        assert (await http.get(url)).json() == [kept]
        again = await http.delete(f"{url}/{gone['id']}")
        assert again.status_code == 404, again.text
    assert await address_ids(db, customer) == [kept["id"]], "the row and its sealed lines are gone, not flagged"
    assert await changes_logged(db, gone["id"]) == [(f"customer:{customer['id']}", customer["id"])]
    assert await event_types(db, customer) == ["customer.registered"], "addresses never enter an event"


async def test_another_customers_or_an_unknown_address_is_a_404_and_deletes_nothing(db: asyncpg.Connection) -> None:
    owner, other = await create_customer(), await create_customer()
    address = await saved(owner)
    async with as_customer(other) as http:
        for url in (
            f"/api/customers/{other['id']}/addresses/{address['id']}",  # their own path, another's address
            f"/api/customers/{owner['id']}/addresses/{address['id']}",  # another customer's path
        ):
            response = await http.delete(url)
            assert response.status_code == 404, response.text
    async with as_customer(owner) as http:
        for address_id in (0, -1, 9_999_999_999, MAX_INT_ID):
            response = await http.delete(f"/api/customers/{owner['id']}/addresses/{address_id}")
            assert response.status_code == 404, (address_id, response.text)
        past = await http.delete(f"/api/customers/{owner['id']}/addresses/{MAX_INT_ID + 1}")
        assert past.status_code == 400, past.text
        assert [e.get("key") for e in past.json()["extra"]] == ["address_id"]
        unknown_customer = await http.delete(f"/api/customers/{uuid.uuid4()}/addresses/{address['id']}")
        assert unknown_customer.status_code == 404, unknown_customer.text
    assert await address_ids(db, owner) == [address["id"]]
    assert await changes_logged(db, address["id"]) == []


async def test_support_may_delete_an_address_a_service_or_nobody_may_not(db: asyncpg.Connection) -> None:
    customer = await create_customer()
    address = await saved(customer)
    url = f"{service_url('customer')}/api/customers/{customer['id']}/addresses/{address['id']}"
    async with api_client("service", service="checkout", scopes=["customer:read"]) as http:
        assert (await http.delete(url)).status_code == 403
    async with httpx.AsyncClient() as http:
        assert (await http.delete(url)).status_code == 401
    assert await address_ids(db, customer) == [address["id"]]
    async with api_client("staff") as http:
        assert (await http.delete(url)).status_code == 204
    assert await address_ids(db, customer) == []
    [(actor, whose)] = await changes_logged(db, address["id"])
    assert actor.startswith("staff:") and whose == customer["id"]


@pytest.fixture
async def checkout() -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_checkout_app())) as test_client:
        yield test_client


async def test_a_checkout_started_with_an_address_keeps_its_copy_once_it_is_deleted(checkout: Client) -> None:
    """Checkout copies a saved address into the session when it starts (sealed there) and completes from that
    copy: changing or deleting the address later changes nothing for it. A new checkout can no longer name a
    deleted one (422)."""
    customer = await create_customer()
    address = await saved(customer)
    cart = (await checkout.post("/api/carts", json={"customer_id": customer["id"]})).json()
    await add(checkout, cart, {}, await create_product("10.00"), 1)
    body = checkout_body(cart["id"], shipping_address=None, customer_shipping_address_id=address["id"])
    del body["billing_address"]
    started = await checkout.post("/api/checkout", json=body)
    assert started.status_code == 201, started.text
    session = started.json()
    url = f"/api/customers/{customer['id']}/addresses/{address['id']}"
    async with as_customer(customer) as http:
        assert (await http.patch(url, json={"city": "Lyon"})).status_code == 200
        assert (await checkout.get(f"/api/checkout/{session['id']}")).json()["shipping_address"]["city"] == "Paris"
        assert (await http.delete(url)).status_code == 204

    done = await checkout.post(f"/api/checkout/{session['id']}/complete", headers={"Idempotency-Key": "k"})
    assert done.status_code == 202, done.text
    seen = (await checkout.get(f"/api/checkout/{session['id']}")).json()
    assert seen["status"] == "completed"
    assert seen["shipping_address"] == session["shipping_address"] and seen["shipping_address"]["city"] == "Paris"

    cart = (await checkout.post("/api/carts", json={"customer_id": customer["id"]})).json()
    await add(checkout, cart, {}, await create_product("10.00"), 1)
    body["cart_id"] = cart["id"]
    refused = await checkout.post("/api/checkout", json=body)
    assert refused.status_code == 422, refused.text
    assert [e.get("key") for e in refused.json()["extra"]] == ["customer_shipping_address_id"]


# -- against the erasure -------------------------------------------------------------------------------


async def _lines(db: asyncpg.Connection, customer: dict[str, Any]) -> list[dict[str, str | None]]:
    """Every address of the customer, its lines opened."""
    rows = await db.fetch("SELECT * FROM customer_addresses WHERE customer_id = $1", uuid.UUID(customer["id"]))
    return [{c: open_value("customer_addresses", c, row["id"], row[c]) for c in ADDRESS_COLUMNS} for row in rows]


async def _waiters_at_least(db: asyncpg.Connection, n: int) -> bool:
    """At least ``n`` statements of the customer database wait on a lock of a customers row (held by the test)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() "
        "AND position('FROM customers' in query) > 0"
    )
    return int(await db.fetchval(query)) >= n


@pytest.mark.parametrize("first", ["erasure", "change"])
@pytest.mark.parametrize("change", ["PATCH", "DELETE"])
async def test_an_address_changed_during_an_erasure_keeps_nothing_of_the_person(
    db: asyncpg.Connection, first: str, change: str
) -> None:
    """Both take the customer's row lock: the erasure, queued first, leaves the change a 404 (the row it locks is
    no longer a live customer's); the change, queued first, commits and the erasure then clears what it wrote.
    The order is pinned by PostgreSQL's queue of row-lock waiters behind a lock the test holds."""
    customer = await create_customer()
    address = await saved(customer)
    url = f"/api/customers/{customer['id']}/addresses/{address['id']}"
    holder = await connect("customer")
    try:
        async with as_customer(customer) as http:
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", uuid.UUID(customer["id"]))
            body = {"address_line1": "12 Secret Lane"} if change == "PATCH" else None
            calls: dict[str, Callable[[], Coroutine[Any, Any, httpx.Response]]] = {
                "erasure": lambda: http.post(f"/api/customers/{customer['id']}/erase"),
                "change": lambda: http.request(change, url, json=body),
            }
            order = [first, *(c for c in calls if c != first)]
            tasks: dict[str, asyncio.Task[httpx.Response]] = {}
            for n, name in enumerate(order, start=1):
                tasks[name] = asyncio.create_task(calls[name]())
                await eventually(functools.partial(_waiters_at_least, db, n), within=30, what=f"{name} waiting")
            await tx.rollback()
            answers = {name: await task for name, task in tasks.items()}
    finally:
        await holder.close()
    assert answers["erasure"].status_code == 202, answers["erasure"].text
    expected = {"PATCH": 200, "DELETE": 204} if first == "change" else {"PATCH": 404, "DELETE": 404}
    assert answers["change"].status_code == expected[change], answers["change"].text
    left = await _lines(db, customer)
    if change == "DELETE" and first == "change":
        assert left == []
    else:
        assert left == [anonymised_address_lines()]
