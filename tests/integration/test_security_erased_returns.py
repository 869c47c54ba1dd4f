"""A return asked for after the buyer's erasure keeps no free text (security review, session 28).

The returns group clears a customer's free text (``description``) once, when it applies customer.erased;
the erased person's token stays valid until it expires, and with it (or staff's) a return could still be
asked for afterwards with a description naming them: kept in clear for good, the erasure long done. Now
such a description is refused (409 naming it); the return itself may still be asked for without one.
The returns app runs in-process (the code in the tree) against the real services and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from apps.returns.app import create_app
from tests.support.db import fetch
from tests.support.http import api_client, auth_headers, create_customer, in_process, service_url
from tests.support.orders import eventually
from tests.support.returns import delivered_order, line_id, order, stocked

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30) as client:
        yield client


@pytest.fixture
async def returns() -> AsyncIterator[AsyncTestClient[Any]]:
    async with in_process(create_app, "returns") as client:
        yield client


async def test_a_return_asked_for_after_the_erasure_keeps_no_free_text(
    http: httpx.AsyncClient, returns: AsyncTestClient[Any]
) -> None:
    product = await stocked("6.00", 10)
    customer = (await create_customer(http))["id"]
    own = auth_headers("customer", customer_id=customer)
    delivered = await delivered_order(http, [(product, 3)], customer_id=customer)
    erased = await http.post(f"{service_url('customer')}/api/customers/{customer}/erase", headers=own)
    assert erased.status_code == 202, erased.text

    async def applied() -> bool:  # order-references cleared the address: customer.erased is out
        placed = await order(http, delivered["id"])
        return placed is not None and placed["shipping_address"] is None

    await eventually(applied, within=60, what="the erasure applied to orders")
    marker = f"Erased Person {uuid.uuid4().hex[:10]} +4930 1234567"
    line = {"order_item_id": line_id(delivered, product), "quantity": 1, "reason": "other"}
    with_text = {"order_id": delivered["id"], "items": [line], "description": marker}
    # The erased person's own token, then the back office's.
    for headers in (own, auth_headers("staff")):
        refused = await returns.post("/api/returns", json=with_text, headers=headers)
        assert refused.status_code == 409, refused.text
        assert [e["key"] for e in refused.json()["extra"]] == ["description"]
    rows = await fetch("returns", "SELECT description FROM return_requests WHERE order_id = $1", delivered["id"])
    assert rows == []
    without = await returns.post("/api/returns", json={**with_text, "description": None}, headers=own)
    assert without.status_code == 201, without.text
    rows = await fetch("returns", "SELECT description FROM return_requests WHERE order_id = $1", delivered["id"])
    assert [row["description"] for row in rows] == [None]


async def test_a_customer_not_erased_keeps_their_description(returns: AsyncTestClient[Any]) -> None:
    """The check asks the customer service only for free text, and a live person's key answers 200."""
    async with api_client(timeout=30) as http:
        product = await stocked("6.00", 10)
        customer = (await create_customer(http))["id"]
        delivered = await delivered_order(http, [(product, 1)], customer_id=customer)
    own = auth_headers("customer", customer_id=customer)
    line = {"order_item_id": line_id(delivered, product), "quantity": 1, "reason": "other"}
    body = {"order_id": delivered["id"], "items": [line], "description": "the lid is cracked"}
    asked = await returns.post("/api/returns", json=body, headers=own)
    assert asked.status_code == 201, asked.text
    assert asked.json()["description"] == "the lid is cracked"
