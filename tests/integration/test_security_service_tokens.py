"""A service token is no customer's proxy (security review, session 28): the checkout's routes are public
(guests shop there), so a scope cannot keep a service out of them; a service token of any service, even
one holding no scope at all, read every customer's cart and checkout session with its addresses opened,
made carts for any customer and completed their checkouts. No service calls the checkout API. The
checkout app runs in-process (the code in the tree) against the real database, Redis, catalog and
customer services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apps.checkout.app import create_app
from tests.support.checkout import Client, checkout_body
from tests.support.http import auth_headers, create_customer, create_product

pytestmark = pytest.mark.usefixtures("stack")

# warehouse's token holds no scope; order's holds customer:read and customer:data-keys.
SERVICES = [
    auth_headers("service", service="warehouse"),
    auth_headers("service", service="order", scopes=["customer:read", "customer:data-keys"]),
]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app()) as test_client:
        yield test_client


async def _customers_checkout(client: Client) -> tuple[str, dict[str, Any], dict[str, Any]]:
    customer = (await create_customer())["id"]
    own = auth_headers("customer", customer_id=customer)
    product = await create_product("3.00")
    cart = (await client.post("/api/carts", json={"customer_id": customer}, headers=own)).json()
    line = {"product_id": product["id"], "quantity": 1}
    assert (await client.post(f"/api/carts/{cart['id']}/items", json=line, headers=own)).status_code == 200
    started = await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=own)
    assert started.status_code == 201, started.text
    return customer, cart, started.json()


@pytest.mark.parametrize("service", SERVICES, ids=["no scope", "customer:read"])
async def test_a_service_token_reaches_no_customers_cart_or_checkout(client: Client, service: dict[str, str]) -> None:
    customer, cart, session = await _customers_checkout(client)
    answers = {
        "read cart": await client.get(f"/api/carts/{cart['id']}", headers=service),
        "read checkout": await client.get(f"/api/checkout/{session['id']}", headers=service),
        "cart for customer": await client.post("/api/carts", json={"customer_id": customer}, headers=service),
        "add line": await client.post(
            f"/api/carts/{cart['id']}/items", json={"product_id": str(uuid.uuid4()), "quantity": 1}, headers=service
        ),
        "start checkout": await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=service),
        "complete": await client.post(
            f"/api/checkout/{session['id']}/complete", headers={**service, "Idempotency-Key": str(uuid.uuid4())}
        ),
    }
    assert {what: a.status_code for what, a in answers.items()} == dict.fromkeys(answers, 403)
    assert all("shipping_address" not in a.text for a in answers.values())
    # The customer's own token still does all of it; a guest cart is still the guest token's to open.
    own = auth_headers("customer", customer_id=customer)
    assert (await client.get(f"/api/checkout/{session['id']}", headers=own)).status_code == 200
    guest = (await client.post("/api/carts", headers=service)).json()
    opened = await client.get(f"/api/carts/{guest['id']}", headers={**service, "X-Guest-Token": guest["guest_token"]})
    assert opened.status_code == 200, opened.text
