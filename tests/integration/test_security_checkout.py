"""Checkout attacked through what it trusts (S, session 32): configuration rows read as they are, and a
session's prices after the catalog has changed them.

The checkout app in-process (the tree's code) against the running stack's checkout database, Redis, catalog
and customer services. Each test makes its own rows (a shipping method under a unique id, its own products
and carts) and removes the configuration row it added.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from apps.checkout.app import create_app
from tests.support.checkout import Client, add, checkout_body, checkout_rows, completed_events, execute, guest_cart
from tests.support.http import api_client, authorized, create_product, service_url

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture(scope="module")
async def client(stack: None) -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


@pytest.fixture
async def yen_method() -> AsyncIterator[str]:
    """A JPY shipping method of this test's own, costing 500.50: a configuration row nothing checks but
    ``cost >= 0`` (rows of shipping_methods are changed with SQL, README: Checkout)."""
    method = f"s32-{uuid.uuid4().hex[:12]}"
    await execute(
        "INSERT INTO shipping_methods (id, currency, name, cost, is_active) VALUES ($1, 'JPY', 'probe', 500.50, true)",
        method,
    )
    try:
        yield method
    finally:
        await execute("DELETE FROM shipping_methods WHERE id = $1", method)


async def test_a_shipping_cost_finer_than_its_currency_is_refused_where_it_is_read(
    client: Client, yen_method: str
) -> None:
    """500.50 JPY of shipping made a checkout total of 1,570.50 yen: no card provider charges half a yen, the
    payment refuses the authorization and the saga cancels the order at its deadline, after the buyer was
    told it was placed. The method is refused when the checkout reads it, naming the field; a whole-yen cost
    prices as before."""
    cart, headers = await guest_cart(client)
    await add(client, cart, headers, await create_product("1000", "JPY"), 1)
    body = checkout_body(cart["id"], shipping_method_id=yen_method)

    refused = await client.post("/api/checkout", json=body, headers=headers)
    assert refused.status_code == 422, refused.text
    problems = refused.json()["extra"]
    assert [p["key"] for p in problems] == ["shipping_method_id"], problems
    assert "500.50" in problems[0]["message"] and "JPY" in problems[0]["message"], problems
    assert await checkout_rows(cart["id"]) == 0

    await execute("UPDATE shipping_methods SET cost = 500 WHERE id = $1", yen_method)
    priced = await client.post("/api/checkout", json=body, headers=headers)
    assert priced.status_code == 201, priced.text
    amounts = [priced.json()[name] for name in ("shipping_amount", "tax_amount", "total_amount")]
    assert amounts == ["500.00", "70.00", "1570.00"]


CHANGES = {
    "repriced": ("PATCH", {"price": "1.00"}),
    "currency": ("PATCH", {"currency": "EUR"}),
    "inactive": ("PATCH", {"status": "inactive"}),
    "withdrawn": ("DELETE", None),
}


@pytest.mark.parametrize("change", [*CHANGES, "unchanged"])
async def test_a_checkout_completes_only_while_its_lines_sell_at_its_prices(client: Client, change: str) -> None:
    """A product withdrawn, repriced or moved to another currency between the checkout's start and its
    completion was sold anyway, at the session's price (an order confirmed, stock reserved): a withdrawn
    product stayed for sale for 30 minutes, and a price mistake the catalog had corrected could still be
    bought by whoever had started a checkout. Now the completion is a 409 naming cart_id and writes nothing."""
    cart, headers = await guest_cart(client)
    product = await create_product("20.00")
    await add(client, cart, headers, product, 2)
    started = await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
    assert started.status_code == 201, started.text
    session = started.json()
    if change in CHANGES:
        method, body = CHANGES[change]
        async with api_client() as http:
            answer = await http.request(method, f"{service_url('catalog')}/api/products/{product['id']}", json=body)
        assert answer.status_code in (200, 204), answer.text

    done = await client.post(
        f"/api/checkout/{session['id']}/complete", headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
    )
    if change == "unchanged":
        assert done.status_code == 202, done.text
        return
    assert done.status_code == 409, done.text
    assert [p["key"] for p in done.json()["extra"]] == ["cart_id"], done.text
    assert product["id"] in done.json()["detail"], done.text
    again = await client.get(f"/api/checkout/{session['id']}", headers=headers)
    assert again.json()["status"] == "initialized" and again.json()["order_id"] is None, again.text
    assert await completed_events(session["id"]) == 0
