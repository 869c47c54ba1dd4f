"""Checkout attacked through what it trusts (S, session 32): configuration rows read as they are.

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
from tests.support.checkout import Client, add, checkout_body, checkout_rows, execute, guest_cart
from tests.support.http import authorized, create_product

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
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
