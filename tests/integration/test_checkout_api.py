"""The checkout app in-process, against the real checkout database, Redis, catalog and customer services."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from apps.checkout.app import create_app
from apps.common.fields import MAX_INT_ID
from apps.common.personal import ADDRESS_FIELDS
from tests.support.checkout import (
    US_ADDRESS,
    Client,
    add,
    checkout_body,
    checkout_rows,
    completed_events,
    execute,
    guest_cart,
    item_rows,
    scalar,
    set_price,
    withdraw,
)
from tests.support.db import connect, outbox_fails_at_commit
from tests.support.http import api_client, authorized, create_customer, create_product, service_url
from tests.support.personal import opened

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


def keys(response: httpx.Response) -> list[str]:
    return [entry.get("key") for entry in response.json().get("extra", [])]


# -- carts -------------------------------------------------------------------------------------------


async def test_a_guest_cart_is_reachable_only_with_its_own_token(client: Client) -> None:
    cart, mine = await guest_cart(client)
    _, theirs = await guest_cart(client)
    assert cart["customer_id"] is None and cart["status"] == "active" and cart["items"] == []
    assert cart["session_id"].startswith("cs_") and cart["expires_at"]
    product = await create_product("4.00")
    url = f"/api/carts/{cart['id']}"
    line = {"product_id": product["id"], "quantity": 1}
    async with (
        AsyncTestClient(app=create_app()) as guest,
        authorized(AsyncTestClient(app=create_app()), "customer", customer_id=uuid.uuid4()) as customer,
    ):
        for caller in (guest, customer):
            for headers in ({}, theirs, {"X-Guest-Token": "forged"}):
                for response in (
                    await caller.get(url, headers=headers),
                    await caller.post(f"{url}/items", json=line, headers=headers),
                ):
                    assert response.status_code == 403, response.text
                    assert keys(response) == ["X-Guest-Token"]
    for headers in ({}, theirs, {"X-Guest-Token": "forged"}):  # admin's token reads it (below), changes it not
        response = await client.post(f"{url}/items", json=line, headers=headers)
        assert response.status_code == 403 and keys(response) == ["X-Guest-Token"], response.text
    assert await item_rows(cart["id"]) == 0
    seen = await client.get(url, headers=mine)
    assert seen.status_code == 200 and "guest_token" not in seen.json()
    assert (
        await scalar("SELECT guest_token FROM cart_sessions WHERE id = $1", uuid.UUID(cart["id"]))
        != (cart["guest_token"])
    ), "the token itself must not be stored"


@pytest.mark.parametrize("role", ["staff", "admin"])
async def test_support_reads_a_guests_cart_and_checkout_without_its_token_but_changes_neither(
    client: Client, role: str
) -> None:
    """README's policy: staff reach any cart or checkout. Support reading what a guest is buying is normal;
    the guest's token is still what changes the cart (lines, checkout, completion): support does not shop
    for a guest."""
    cart, mine = await guest_cart(client)
    product = await create_product("4.00")
    await add(client, cart, mine, product, 2)
    session = (await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=mine)).json()
    as_guest = (await client.get(f"/api/carts/{cart['id']}", headers=mine)).json()
    async with authorized(AsyncTestClient(app=create_app()), role) as support:
        seen = await support.get(f"/api/carts/{cart['id']}")
        assert (seen.status_code, seen.json()) == (200, as_guest)
        checkout = await support.get(f"/api/checkout/{session['id']}")
        assert checkout.status_code == 200 and checkout.json()["id"] == session["id"], checkout.text
        for url in (f"/api/carts/{cart['id']}", f"/api/checkout/{session['id']}"):
            forged = await support.get(url, headers={"X-Guest-Token": "forged"})
            assert forged.status_code == 403, "a token sent is checked, whoever sends it"
        for response in (
            await support.post(f"/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": 1}),
            await support.delete(f"/api/carts/{cart['id']}/items/{as_guest['items'][0]['id']}"),
            await support.post("/api/checkout", json=checkout_body(cart["id"])),
            await support.post(f"/api/checkout/{session['id']}/complete", headers={"Idempotency-Key": "k"}),
        ):
            assert response.status_code == 403 and keys(response) == ["X-Guest-Token"], response.text
    assert (await client.get(f"/api/carts/{cart['id']}", headers=mine)).json() == as_guest, "unchanged"
    assert await checkout_rows(cart["id"]) == 1 and await completed_events(session["id"]) == 0


async def test_bodies_whose_strings_are_not_utf8_are_a_400_naming_the_body(client: Client) -> None:
    """POST /api/carts reads its optional body itself, the other writes through Litestar: both were a 500
    (msgspec's UnicodeDecodeError is not a DecodeError; W, session 34)."""
    cart, mine = await guest_cart(client)
    answers = [
        await client.post("/api/carts", content=b'{"\x80": 1}'),  # a key: read before the type
        await client.post(f"/api/carts/{cart['id']}/items", content=b'{"product_id": "\xe9"}', headers=mine),
        await client.post("/api/checkout", content='{"cart_id": "Malmö"}'.encode("latin-1"), headers=mine),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert keys(answer) == ["body"], answer.text
    assert await item_rows(cart["id"]) == 0


async def test_a_line_id_past_what_the_column_holds_is_a_400_naming_item_id(client: Client) -> None:
    """cart_items.id is a BIGINT: a larger id reached the database, whose refusal answered a 400 naming no
    field ("A value is invalid or out of range"); the id is a path parameter with its bound now."""
    cart, mine = await guest_cart(client)
    for item_id in (MAX_INT_ID + 1, 2**63, 10**20):
        url = f"/api/carts/{cart['id']}/items/{item_id}"
        for answer in (
            await client.patch(url, json={"quantity": 1}, headers=mine),
            await client.delete(url, headers=mine),
        ):
            assert answer.status_code == 400, answer.text
            assert answer.json()["extra"][0]["key"] == "item_id" and answer.json()["extra"][0]["source"] == "path"
    largest = f"/api/carts/{cart['id']}/items/{MAX_INT_ID}"  # a line id that may exist: looked up, not found
    assert (await client.delete(largest, headers=mine)).status_code == 404


async def test_a_customer_has_one_active_cart(client: Client) -> None:
    customer = await create_customer()
    first = await client.post("/api/carts", json={"customer_id": customer["id"]})
    again = await client.post("/api/carts", json={"customer_id": customer["id"]})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and first.json()["customer_id"] == customer["id"]
    assert "guest_token" not in first.json()
    assert (await client.get(f"/api/carts/{first.json()['id']}")).status_code == 200
    unknown = await client.post("/api/carts", json={"customer_id": str(uuid.uuid4())})
    assert unknown.status_code == 422 and keys(unknown) == ["customer_id"]


async def test_concurrent_first_carts_of_a_customer_give_one_cart(client: Client) -> None:
    customer = await create_customer()
    answers = await asyncio.gather(*(client.post("/api/carts", json={"customer_id": customer["id"]}) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1


async def test_lines_are_added_merged_changed_and_removed_at_catalog_prices(client: Client) -> None:
    cart, headers = await guest_cart(client)
    shirt, mug = await create_product("19.90"), await create_product("5.05")
    await add(client, cart, headers, shirt, 1)
    await add(client, cart, headers, mug, 3)
    merged = await add(client, cart, headers, shirt, 2)
    assert [(i["sku"], i["quantity"], i["unit_price"], i["total_price"]) for i in merged["items"]] == [
        (shirt["sku"], 3, "19.90", "59.70"),
        (mug["sku"], 3, "5.05", "15.15"),
    ]
    assert merged["subtotal"] == "74.85" and merged["currency"] == "USD"
    mug_line = merged["items"][1]["id"]
    url = f"/api/carts/{cart['id']}/items/{mug_line}"
    changed = await client.patch(url, json={"quantity": 1}, headers=headers)
    assert changed.status_code == 200 and changed.json()["subtotal"] == "64.75"
    removed = await client.delete(url, headers=headers)
    assert removed.status_code == 200 and [i["sku"] for i in removed.json()["items"]] == [shirt["sku"]]
    assert (await client.delete(url, headers=headers)).status_code == 404
    assert (await client.patch(url, json={"quantity": 2}, headers=headers)).status_code == 404
    assert (await client.get(f"/api/carts/{cart['id']}", headers=headers)).json() == removed.json()


async def test_unknown_carts_are_404(client: Client) -> None:
    missing = uuid.uuid4()
    assert (await client.get(f"/api/carts/{missing}")).status_code == 404
    product = await create_product()
    body = {"product_id": product["id"], "quantity": 1}
    assert (await client.post(f"/api/carts/{missing}/items", json=body)).status_code == 404


async def test_concurrent_adds_to_one_cart_keep_an_exact_quantity(client: Client) -> None:
    cart, headers = await guest_cart(client)
    product = await create_product("2.50")
    body = {"product_id": product["id"], "quantity": 3}
    answers = await asyncio.gather(
        *(client.post(f"/api/carts/{cart['id']}/items", json=body, headers=headers) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {200}
    view = (await client.get(f"/api/carts/{cart['id']}", headers=headers)).json()
    assert [(i["quantity"], i["total_price"]) for i in view["items"]] == [(60, "150.00")]
    assert await item_rows(cart["id"]) == 1


async def test_a_cart_holds_one_currency_and_at_most_1000_units_a_line(client: Client) -> None:
    cart, headers = await guest_cart(client)
    usd, eur = await create_product("1.00", "USD"), await create_product("1.00", "EUR")
    await add(client, cart, headers, usd, 999)
    body = {"product_id": eur["id"], "quantity": 1}
    mixed = await client.post(f"/api/carts/{cart['id']}/items", json=body, headers=headers)
    assert mixed.status_code == 422 and keys(mixed) == ["product_id"]
    body = {"product_id": usd["id"], "quantity": 2}
    too_many = await client.post(f"/api/carts/{cart['id']}/items", json=body, headers=headers)
    assert too_many.status_code == 422 and keys(too_many) == ["quantity"]
    view = (await client.get(f"/api/carts/{cart['id']}", headers=headers)).json()
    assert [i["quantity"] for i in view["items"]] == [999]


# -- bad input ---------------------------------------------------------------------------------------

BAD_ITEMS = [
    (b'{"product_id": ', 400, "body"),
    (b'{"product_id": "%(product)s", "quantity": 0}', 400, "quantity"),
    (b'{"product_id": "%(product)s", "quantity": -2}', 400, "quantity"),
    (b'{"product_id": "%(product)s", "quantity": 1001}', 400, "quantity"),
    (b'{"product_id": "%(product)s", "quantity": "one"}', 400, "quantity"),
    (b'{"product_id": "%(product)s"}', 400, "quantity"),
    (b'{"product_id": "nope", "quantity": 1}', 400, "product_id"),
    (b'{"product_id": "%(product)s", "quantity": 1, "price": "0.01"}', 400, "price"),
    (b'{"product_id": "%(unknown)s", "quantity": 1}', 422, "product_id"),
    (b'{"product_id": "%(withdrawn)s", "quantity": 1}', 422, "product_id"),
]


@pytest.mark.parametrize(("template", "status", "field"), BAD_ITEMS)
async def test_bad_lines_are_a_4xx_naming_the_field_and_write_nothing(
    client: Client, template: bytes, status: int, field: str
) -> None:
    cart, headers = await guest_cart(client)
    product, withdrawn = await create_product(), await create_product()
    await withdraw(withdrawn)
    body = template % {
        b"product": product["id"].encode(),
        b"unknown": str(uuid.uuid4()).encode(),
        b"withdrawn": withdrawn["id"].encode(),
    }
    response = await client.post(
        f"/api/carts/{cart['id']}/items", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert field in keys(response), response.text
    assert await item_rows(cart["id"]) == 0


async def test_bad_cart_bodies_and_oversized_bodies_are_refused(client: Client) -> None:
    for body, field in ((b'{"customer_id": ', "body"), (b'{"customer_id": "x"}', "customer_id"), (b"[]", "body")):
        response = await client.post("/api/carts", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and field in keys(response), response.text
    cart, headers = await guest_cart(client)
    huge = b'{"product_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await client.post(
        f"/api/carts/{cart['id']}/items", content=huge, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert await item_rows(cart["id"]) == 0


# -- checkout ----------------------------------------------------------------------------------------


async def test_checkout_prices_tax_and_shipping_from_configuration(client: Client) -> None:
    cart, headers = await guest_cart(client)
    await add(client, cart, headers, await create_product("19.99"), 3)
    body = checkout_body(cart["id"], shipping_method_id="express", shipping_address={**US_ADDRESS, "country": "DE"})
    response = await client.post("/api/checkout", json=body, headers=headers)
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["status"] == "initialized" and session["currency"] == "USD"
    assert (session["subtotal"], session["tax_amount"], session["shipping_amount"]) == ("59.97", "11.39", "15.00")
    assert (session["discount_amount"], session["total_amount"]) == ("0.00", "86.36")
    assert session["customer_id"] == cart["session_id"] and session["session_token"]
    assert session["shipping_method_name"].startswith("Express")
    fetched = await client.get(f"/api/checkout/{session['id']}", headers=headers)
    assert fetched.status_code == 200 and fetched.json() == session
    async with AsyncTestClient(app=create_app()) as guest:  # no bearer token: staff's reads need no guest token
        assert (await guest.get(f"/api/checkout/{session['id']}")).status_code == 403
    assert (await client.get(f"/api/checkout/{uuid.uuid4()}")).status_code == 404


async def test_a_price_change_between_add_and_checkout_is_in_the_checkout(client: Client) -> None:
    cart, headers = await guest_cart(client)
    product = await create_product("10.00")
    await add(client, cart, headers, product, 2)
    await set_price(product, "12.50")
    session = (await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)).json()
    assert session["subtotal"] == "25.00" and session["items"][0]["unit_price"] == "12.50"
    view = (await client.get(f"/api/carts/{cart['id']}", headers=headers)).json()
    assert view["subtotal"] == "25.00", "the cart shows what the checkout charges"


async def test_saved_addresses_come_from_the_customer_service(client: Client) -> None:
    customer = await create_customer()
    async with api_client(base_url=service_url("customer")) as http:
        saved = await http.post(
            f"/api/customers/{customer['id']}/addresses",
            json={"type": "shipping", "address_line1": "5 Rue X", "city": "Paris", "country": "FR"},
        )
    assert saved.status_code == 201, saved.text
    cart = (await client.post("/api/carts", json={"customer_id": customer["id"]})).json()
    await add(client, cart, {}, await create_product("10.00"), 1)
    body = checkout_body(cart["id"], shipping_address=None, customer_shipping_address_id=saved.json()["id"])
    del body["billing_address"]
    response = await client.post("/api/checkout", json=body)
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["shipping_address"]["city"] == "Paris" and session["tax_amount"] == "2.00"  # FR 20 %
    assert session["customer_id"] == customer["id"]
    assert session["billing_address"] == session["shipping_address"], "billed to the shipping address by default"
    other = checkout_body(cart["id"], shipping_address=None, customer_shipping_address_id=999_999_999)
    refused = await client.post("/api/checkout", json=other)
    assert refused.status_code == 422 and keys(refused) == ["customer_shipping_address_id"]


BAD_CHECKOUTS: list[tuple[dict[str, Any], int, str]] = [
    ({"shipping_method_id": "teleport"}, 422, "shipping_method_id"),
    ({"shipping_address": {**US_ADDRESS, "country": "AQ"}}, 422, "shipping_address.country"),
    ({"shipping_address": {**US_ADDRESS, "country": "usa"}}, 400, "shipping_address.country"),
    ({"shipping_address": None}, 422, "shipping_address"),
    ({"customer_billing_address_id": 1}, 422, "customer_billing_address_id"),
    ({"payment_method": {"type": "card", "token": "4111 1111 1111 1111"}}, 400, "payment_method.token"),
    ({"payment_method": {"type": "cash", "token": "x"}}, 400, "payment_method.type"),
    ({"cart_id": str(uuid.uuid4())}, 422, "cart_id"),
    ({"surprise": True}, 400, "surprise"),
]


@pytest.mark.parametrize(("overrides", "status", "field"), BAD_CHECKOUTS)
async def test_bad_checkouts_are_a_4xx_naming_the_field_and_write_nothing(
    client: Client, overrides: dict[str, Any], status: int, field: str
) -> None:
    cart, headers = await guest_cart(client)
    await add(client, cart, headers, await create_product(), 1)
    response = await client.post("/api/checkout", json=checkout_body(cart["id"], **overrides), headers=headers)
    assert response.status_code == status, response.text
    assert field in keys(response), response.text
    assert "4111" not in response.text
    assert await checkout_rows(cart["id"]) == 0


async def test_an_empty_cart_or_another_guests_cart_cannot_be_checked_out(client: Client) -> None:
    cart, headers = await guest_cart(client)
    empty = await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
    assert empty.status_code == 409 and keys(empty) == ["cart_id"]
    _, theirs = await guest_cart(client)
    await add(client, cart, headers, await create_product(), 1)
    stolen = await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=theirs)
    assert stolen.status_code == 403 and keys(stolen) == ["X-Guest-Token"]
    assert await checkout_rows(cart["id"]) == 0


# -- completing --------------------------------------------------------------------------------------


async def start(client: Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    cart, headers = await guest_cart(client)
    await add(client, cart, headers, await create_product("8.00"), 2)
    response = await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
    assert response.status_code == 201, response.text
    return cart, response.json(), headers


async def test_complete_writes_one_event_and_converts_the_cart(client: Client) -> None:
    cart, session, headers = await start(client)
    url = f"/api/checkout/{session['id']}/complete"
    assert keys(await client.post(url, headers=headers)) == ["Idempotency-Key"]
    done = await client.post(url, headers={**headers, "Idempotency-Key": "k-1"})
    assert done.status_code == 202, done.text
    assert done.json()["status"] == "completed" and uuid.UUID(done.json()["order_id"])
    again = await client.post(url, headers={**headers, "Idempotency-Key": "k-other"})
    assert again.status_code == 202 and again.json() == done.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await completed_events(session["id"]) == 1
    view = (await client.get(f"/api/carts/{cart['id']}", headers=headers)).json()
    assert view["status"] == "converted"
    late = await client.post(
        f"/api/carts/{cart['id']}/items", json={"product_id": view["items"][0]["product_id"], "quantity": 1}
    )
    assert late.status_code == 403, "a converted guest cart still needs its token"
    late = await client.post(
        f"/api/carts/{cart['id']}/items",
        json={"product_id": view["items"][0]["product_id"], "quantity": 1},
        headers=headers,
    )
    assert late.status_code == 409 and keys(late) == ["cart_id"]
    got = (await client.get(f"/api/checkout/{session['id']}", headers=headers)).json()
    assert got["status"] == "completed" and got["order_id"] == done.json()["order_id"] and got["completed_at"]


async def test_the_event_carries_what_the_order_needs(client: Client) -> None:
    _, session, headers = await start(client)
    await client.post(f"/api/checkout/{session['id']}/complete", headers={**headers, "Idempotency-Key": "k"})
    data = await scalar(
        "SELECT event_data FROM event_store WHERE aggregate_id = $1 AND aggregate_type = 'checkout'",
        uuid.UUID(session["id"]),
    )
    event = json.loads(data)
    for column in ("shipping_address", "billing_address"):  # sealed with the guest's own data key
        event[column] = await opened(event[column], ADDRESS_FIELDS, event["customer_id"], f"{column}.")
    assert event["is_guest"] is True and event["customer_id"] == session["customer_id"]
    assert event["lines"][0]["quantity"] == 2 and event["lines"][0]["unit_price"] == "8.00"
    assert {"sku", "name", "product_id", "total_price"} <= set(event["lines"][0])
    assert event["shipping_address"]["country"] == "US" and event["billing_address"]["city"] == "Springfield"
    assert (event["shipping_method_id"], event["shipping_amount"]) == ("standard", "5.00")
    assert event["payment_method_type"] == "card" and event["payment_method_id"] == "tok_visa_4242"
    assert Decimal(event["total_amount"]) == Decimal(session["total_amount"]) and event["currency"] == "USD"


async def test_an_expired_session_is_409_and_writes_nothing(client: Client) -> None:
    cart, session, headers = await start(client)
    await execute(
        "UPDATE checkout_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1", uuid.UUID(session["id"])
    )
    shown = await client.get(f"/api/checkout/{session['id']}", headers=headers)
    assert shown.json()["status"] == "expired"
    response = await client.post(
        f"/api/checkout/{session['id']}/complete", headers={**headers, "Idempotency-Key": "late"}
    )
    assert response.status_code == 409 and keys(response) == ["checkout_id"]
    assert await completed_events(session["id"]) == 0
    assert await scalar("SELECT status FROM cart_sessions WHERE id = $1", uuid.UUID(cart["id"])) == "active"


async def test_a_cart_changed_after_the_checkout_started_must_check_out_again(client: Client) -> None:
    cart, session, headers = await start(client)
    await add(client, cart, headers, await create_product("1.00"), 1)
    response = await client.post(f"/api/checkout/{session['id']}/complete", headers={**headers, "Idempotency-Key": "k"})
    assert response.status_code == 409 and keys(response) == ["cart_id"]
    assert await completed_events(session["id"]) == 0


async def test_a_customer_checkout_completes_with_the_customer_id(client: Client) -> None:
    customer = await create_customer()
    cart = (await client.post("/api/carts", json={"customer_id": customer["id"]})).json()
    await add(client, cart, {}, await create_product("3.00"), 1)
    session = (await client.post("/api/checkout", json=checkout_body(cart["id"]))).json()
    done = await client.post(f"/api/checkout/{session['id']}/complete", headers={"Idempotency-Key": "k"})
    assert done.status_code == 202
    data = await scalar(
        "SELECT event_data->>'customer_id' FROM event_store WHERE aggregate_id = $1", uuid.UUID(session["id"])
    )
    assert data == customer["id"]
    fresh = await client.post("/api/carts", json={"customer_id": customer["id"]})
    assert fresh.status_code == 201 and fresh.json()["id"] != cart["id"], "a converted cart is not the active one"


async def test_a_failed_commit_answers_an_error_and_completes_nothing(client: Client) -> None:
    cart, session, headers = await start(client)
    conn = await connect("checkout")
    try:
        async with outbox_fails_at_commit(conn, "checkout_id", session["id"]):
            response = await client.post(
                f"/api/checkout/{session['id']}/complete", headers={**headers, "Idempotency-Key": "k"}
            )
    finally:
        await conn.close()
    assert response.status_code >= 500 and "outbox refused" not in response.text
    assert await completed_events(session["id"]) == 0
    assert await scalar("SELECT status FROM checkout_sessions WHERE id = $1", uuid.UUID(session["id"])) == "initialized"
    assert await scalar("SELECT status FROM cart_sessions WHERE id = $1", uuid.UUID(cart["id"])) == "active"
    retried = await client.post(f"/api/checkout/{session['id']}/complete", headers={**headers, "Idempotency-Key": "k"})
    assert retried.status_code == 202 and await completed_events(session["id"]) == 1
