"""A cart's size at its limits, through the running checkout service: it holds at most as many products
as an order takes (100), so its checkout can price it and its order can be placed.

Before the cap a cart took any number of lines; past 500 its checkout asked the catalog to validate more
ids than the catalog answers for (a 400), which the checkout reported as the catalog being down: a 503
"retry later" that no retry could ever change. The lines past the first are written straight into the
database here (fresh random product ids: only the count matters), so the test needs one real product.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apps.common.pricing import MAX_LINES
from tests.support.checkout import add, checkout_body, execute, guest_cart, item_rows
from tests.support.http import api_client, create_product, service_url

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(base_url=service_url("checkout"), timeout=30) as client:
        yield client


async def cart_with_lines(http: httpx.AsyncClient, lines: int) -> tuple[dict[str, Any], dict[str, str]]:
    """A guest cart of ``lines`` products: one added through the API, the others written as rows."""
    cart, headers = await guest_cart(http)
    await add(http, cart, headers, await create_product("2.00"), 1)
    await execute(
        """INSERT INTO cart_items (cart_session_id, product_id, product_sku, product_name, quantity, unit_price,
                                   total_price)
           SELECT $1, gen_random_uuid(), 'SKU-' || n, 'Filler ' || n, 1, 2.00, 2.00 FROM generate_series(2, $2) n""",
        uuid.UUID(cart["id"]),
        lines,
    )
    assert await item_rows(cart["id"]) == lines
    return cart, headers


async def test_a_cart_holds_as_many_products_as_an_order_takes(http: httpx.AsyncClient) -> None:
    cart, headers = await cart_with_lines(http, MAX_LINES)
    one_more = await create_product("3.00")
    refused = await http.post(
        f"/api/carts/{cart['id']}/items", json={"product_id": one_more["id"], "quantity": 1}, headers=headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["extra"][0]["key"] == "product_id"
    assert str(MAX_LINES) in refused.json()["extra"][0]["message"]
    assert await item_rows(cart["id"]) == MAX_LINES

    # A product already in the cart is not a new line: its quantity still changes.
    first = (await http.get(f"/api/carts/{cart['id']}", headers=headers)).json()["items"][0]
    raised = await http.post(
        f"/api/carts/{cart['id']}/items", json={"product_id": first["product_id"], "quantity": 2}, headers=headers
    )
    assert raised.status_code == 200, raised.text


@pytest.mark.parametrize("lines", [MAX_LINES + 1, 501], ids=["just-over", "over-the-catalog-limit"])
async def test_checkout_of_an_oversized_cart_is_a_422_not_a_503(http: httpx.AsyncClient, lines: int) -> None:
    """A cart filled before the cap existed: the checkout says what is wrong with it."""
    cart, headers = await cart_with_lines(http, lines)
    started = await http.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
    assert started.status_code == 422, started.text
    assert started.json()["extra"][0]["key"] == "cart_id"
    assert str(MAX_LINES) in started.json()["extra"][0]["message"]


LARGEST = "99999999.99"  # the largest amount an order (and a cart's line, a checkout's total) can hold


async def test_amounts_past_what_an_order_holds_are_a_422_naming_the_field(http: httpx.AsyncClient) -> None:
    """As POST /api/orders answers them: the cart and the checkout were a bare 400 "A value is invalid or
    out of range" naming nothing (the database's numeric overflow)."""
    largest, half = await create_product(LARGEST), await create_product("60000000.00")
    cart = (await http.post("/api/carts")).json()
    headers = {"X-Guest-Token": cart["guest_token"]}
    items = f"/api/carts/{cart['id']}/items"

    too_many = await http.post(items, json={"product_id": largest["id"], "quantity": 2}, headers=headers)
    assert too_many.status_code == 422, too_many.text
    assert too_many.json()["extra"][0]["key"] == "quantity"

    one = await http.post(items, json={"product_id": half["id"], "quantity": 1}, headers=headers)
    assert one.status_code == 200, one.text
    line = one.json()["items"][0]["id"]
    again = await http.post(items, json={"product_id": half["id"], "quantity": 1}, headers=headers)
    assert again.status_code == 422, again.text
    assert again.json()["extra"][0]["key"] == "quantity"
    patched = await http.patch(f"{items}/{line}", json={"quantity": 2}, headers=headers)
    assert patched.status_code == 422, patched.text
    assert patched.json()["extra"][0]["key"] == "quantity"
    missing = await http.patch(f"{items}/0", json={"quantity": 2}, headers=headers)
    assert missing.status_code == 404, missing.text

    # Each line fits; together, with tax and shipping, the checkout's total does not.
    other = await create_product("50000000.00")
    assert (await http.post(items, json={"product_id": other["id"], "quantity": 1}, headers=headers)).status_code == 200
    started = await http.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
    assert started.status_code == 422, started.text
    assert started.json()["extra"][0]["key"] == "cart_id"
    assert LARGEST in started.json()["extra"][0]["message"]
